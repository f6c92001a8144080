import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensorsF32 } from '../../core/tensors/safetensors.ts';
import { loadModelConfig, modelConfigNames } from '../../core/model-config/config.ts';
import { initParams } from '../../worker/models/init.ts';
import { clipParams } from '../../worker/models/clip.ts';
import { numel } from '../../core/tensors/tensor.ts';

const fixture = 'test/fixtures/open_clip-tiny';

const paramCount = (name: string) => clipParams(loadModelConfig(name)).reduce((s, p) => s + numel(p.shape), 0);

function stats(a: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const x of a) s += x;
  const mean = s / a.length;
  let q = 0;
  for (const x of a) q += (x - mean) ** 2;
  return { mean, std: Math.sqrt(q / a.length) };
}

describe('model configs', () => {
  it('ships open_clip configs and the tiny fixture config', () => {
    expect(modelConfigNames()).toEqual(expect.arrayContaining(['RN101', 'RN50', 'ViT-B-16', 'ViT-B-32', 'ViT-L-14', 'ViT-tiny']));
    expect(loadModelConfig('ViT-tiny')).toEqual(JSON.parse(readFileSync(`${fixture}/config.json`, 'utf8')));
    expect(loadModelConfig(`${fixture}/config.json`).vision_cfg.width).toBe(64);
  });

  it('counts the parameters open_clip reports', () => {
    // open_clip ViT-B-32: 151,277,313 parameters; ViT-B-16: 149,620,737; ViT-L-14: 427,616,513.
    expect(paramCount('ViT-B-32')).toBe(151277313);
    expect(paramCount('ViT-B-16')).toBe(149620737);
    expect(paramCount('ViT-L-14')).toBe(427616513);
  });

  it('rejects configs with options the engine does not implement, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'odd.json');
    const cfg = JSON.parse(readFileSync(`${fixture}/config.json`, 'utf8'));
    cfg.vision_cfg.ls_init_value = 0.1;
    writeFileSync(file, JSON.stringify(cfg));
    expect(() => loadModelConfig(file)).toThrow(/odd\.json.*vision_cfg/);
    cfg.vision_cfg.ls_init_value = undefined;
    cfg.vision_cfg.head_width = 24;
    writeFileSync(file, JSON.stringify(cfg));
    expect(() => loadModelConfig(file)).toThrow(/head_width 24/);
    expect(() => loadModelConfig('No-Such-Model')).toThrow(/unknown model config 'No-Such-Model'.*ViT-B-32/);
  });

  it('refuses a file that is not JSON without quoting it', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'notes.pt');
    writeFileSync(file, 'token=hunter2\nsecond line\n');
    expect(() => loadModelConfig(file)).toThrow(/^.*notes\.pt: not an open_clip model config \(not JSON\)$/);
    expect(() => loadModelConfig(tmpdir())).toThrow(/: cannot read it \(EISDIR\)$/);
  });
});

describe('initParams', () => {
  const ref = readSafetensorsF32(readFileSync(`${fixture}/model.safetensors`), 'model.safetensors');
  const ours = initParams(loadModelConfig('ViT-tiny'), 7);

  it('produces exactly the open_clip state-dict keys and shapes', () => {
    const meta = JSON.parse(readFileSync(`${fixture}/meta.json`, 'utf8'));
    expect([...ours].map(([k, t]) => [k, t.shape])).toEqual(meta.state_dict_keys);
    expect([...ours.values()].reduce((s, t) => s + t.data.length, 0)).toBe(meta.param_count);
  });

  it('draws each tensor from the distribution open_clip uses', () => {
    for (const [name, t] of ours) {
      const r = ref.get(name)!;
      const a = stats(t.data);
      const b = stats(r.data);
      if (b.std === 0) {
        expect(t.data, name).toEqual(r.data);
        continue;
      }
      if (t.data.length < 3000) continue;
      expect(Math.abs(a.std / b.std - 1), `${name} std ${a.std} vs ${b.std}`).toBeLessThan(0.06);
      expect(Math.abs(a.mean), name).toBeLessThan(4 * b.std / Math.sqrt(t.data.length));
    }
  });

  it('is reproducible from its seed', () => {
    const again = initParams(loadModelConfig('ViT-tiny'), 7);
    const other = initParams(loadModelConfig('ViT-tiny'), 8);
    expect(again.get('visual.proj')!.data).toEqual(ours.get('visual.proj')!.data);
    expect(other.get('visual.proj')!.data).not.toEqual(ours.get('visual.proj')!.data);
  });
});
