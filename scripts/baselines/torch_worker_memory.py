"""Baseline for `rsclip bench-worker-memory --arch A --batch-size B`: PyTorch + open_clip doing what the worker does.

A random-weight checkpoint of A is saved and loaded (torch.save / load_state_dict), then an evaluation (64 images,
128 captions, no grad), 2 AdamW steps at batch B with open_clip's no-decay rule, ClipLoss and grad clipping, and a
checkpoint of model and optimizer. Prints the process's peak RSS and the time after each phase, then one JSON line.
The worker also evaluates after training; that is left out here because with Debian's torch 1.13 on the 2-core
development machine the evaluation before training took 6 minutes and the one after it did not finish within 30
(the worker's peak is the training step, not evaluation).
Benchmark only: Python is never part of the product.
Usage: python3 torch_worker_memory.py ARCH BATCH [OPEN_CLIP_DIR FTFY_DIR] (defaults: ../shared/baselines/...)
"""
import json
import os
import resource
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
shared = os.path.join(here, '..', '..', '..', 'shared', 'baselines')
sys.path[:0] = sys.argv[3:5] or [os.path.join(shared, 'open_clip-v3.3.0'), os.path.join(shared, 'ftfy-6.3.1')]
import torch  # noqa: E402
import open_clip  # noqa: E402

torch.set_num_threads(os.cpu_count())
arch, batch = sys.argv[1], int(sys.argv[2])
phases = []
t0 = time.monotonic()


def mark(event):
    phases.append({'event': event, 'seconds': round(time.monotonic() - t0, 1), 'hwmMiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})
    print(f"{event}: peak {phases[-1]['hwmMiB']} MiB at {phases[-1]['seconds']} s", file=sys.stderr, flush=True)


with tempfile.TemporaryDirectory() as tmp:
    torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), f'{tmp}/base.pt')
    mark('start')
    model = open_clip.create_model(arch, pretrained=None)
    model.load_state_dict(torch.load(f'{tmp}/base.pt', map_location='cpu'))
    mark('loaded')
    no_decay = lambda n, p: p.ndim < 2 or 'bn' in n or 'ln' in n or 'bias' in n or 'logit_scale' in n
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{'params': [p for n, p in named if no_decay(n, p)], 'weight_decay': 0.0},
         {'params': [p for n, p in named if not no_decay(n, p)], 'weight_decay': 0.2}],
        lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple) else size

    def evaluate():
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                model.encode_image(torch.randn(32, 3, size, size))
            for _ in range(4):
                model.encode_text(torch.randint(0, 49408, (32, 77)))
        model.train()
        mark('eval')

    evaluate()
    for _ in range(2):
        image_features, text_features, scale = model(torch.randn(batch, 3, size, size), torch.randint(0, 49408, (batch, 77)))
        loss = loss_fn(image_features, text_features, scale)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mark('step')
    torch.save({'state_dict': model.state_dict(), 'optimizer': opt.state_dict()}, f'{tmp}/checkpoint.pt')
    mark('checkpoint')

print(json.dumps({'arch': arch, 'batchSize': batch, 'torch': torch.__version__, 'peakRssMiB': phases[-1]['hwmMiB'], 'phases': phases}))
