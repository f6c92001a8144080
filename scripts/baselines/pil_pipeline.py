"""Baseline for `rsclip bench-shard`: the seed project's Python image pipeline on one core.

For each image: PIL open, convert("RGB"), torchvision Resize(S) (shorter side to S, bicubic) + CenterCrop(S),
to a numpy uint8 array. Files are read into memory first, so only decoding and resampling are timed.
Reads image paths from stdin, one per line; prints one JSON line. Usage: python3 pil_pipeline.py SIZE < paths
"""
import io
import json
import sys
import time

import numpy as np
import PIL
from PIL import Image

size = int(sys.argv[1])
blobs = [open(p, "rb").read() for p in sys.stdin.read().splitlines() if p]


def one(b):
    im = Image.open(io.BytesIO(b)).convert("RGB")
    w, h = im.size
    nw, nh = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


one(blobs[0])
wall, cpu = time.perf_counter(), time.process_time()
for b in blobs:
    one(b)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"pipeline": "PIL", "pillow": PIL.__version__, "images": len(blobs), "seconds": wall, "cpu_seconds": cpu}))
