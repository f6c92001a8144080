import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TRAINER_MALLOC_ENV } from '../../worker/train/malloc-env.ts';
import { lintDockerfile } from './dockerfile-lint.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');

describe('worker Dockerfiles', () => {
  it('the linter catches what it should', () => {
    const bad = lintDockerfile('FROM ubuntu\nFROM node:latest\nADD https://example.com/x.tgz /x\nWORKDIR app\nCMD node main.js\nUSER root\n').findings;
    expect(bad.map((f) => f.rule).sort()).toEqual(['DL3000', 'DL3002', 'DL3006', 'DL3007', 'DL3020', 'DL3020', 'DL3025', 'ENTRYPOINT', 'HEALTHCHECK'].sort());
    expect(bad.find((f) => f.rule === 'DL3007')!.line).toBe(2);
  });

  for (const file of ['worker/Dockerfile', 'worker/Dockerfile.cpu']) {
    it(`${file} passes the lint rules and copies only paths that exist`, () => {
      const { ast, findings } = lintDockerfile(read(file));
      expect(findings).toEqual([]);
      for (const copy of ast.getCOPYs()) {
        if (copy.getFlags().some((f) => f.getName() === 'from')) continue;
        const args = copy.getArguments().map((a) => a.getValue());
        for (const src of args.slice(0, -1)) expect(existsSync(join(ROOT, src)), `${file}: COPY ${src}`).toBe(true);
      }
      const entry = ast.getENTRYPOINTs()[0]!.getRawArgumentsContent();
      expect(JSON.parse(entry!)).toEqual(['node', '--import', 'tsx', 'cli/main.ts']);
      expect(existsSync(join(ROOT, 'cli/commands/worker.ts'))).toBe(true);
      // The malloc settings bench-worker-memory measures the worker with.
      const env = new Map(ast.getENVs().flatMap((e) => e.getProperties().map((p) => [p.getName(), p.getValue()] as const)));
      for (const [k, v] of Object.entries(TRAINER_MALLOC_ENV)) expect(env.get(k), `${file}: ENV ${k}`).toBe(v);
    });
  }

  it('the GPU image is CUDA 12 with cuDNN 9 and Node 22, installs the CUDA provider and can fall back to WebGPU', () => {
    const { ast } = lintDockerfile(read('worker/Dockerfile'));
    const images = ast.getFROMs().map((f) => `${f.getImageName()}:${f.getImageTag()}`);
    expect(images.some((i) => /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-/.test(i))).toBe(true);
    expect(images.some((i) => /^node:22\./.test(i))).toBe(true);
    const text = read('worker/Dockerfile');
    expect(text).toMatch(/npm ci --omit=dev/);
    expect(text).not.toMatch(/ONNXRUNTIME_NODE_INSTALL=skip|--ignore-scripts/);
    expect(text).toMatch(/libonnxruntime_providers_cuda\.so/);
    // WebGPU is the fallback: the Vulkan loader, and the driver capability that mounts NVIDIA's Vulkan driver.
    expect(text).toMatch(/RSCLIP_EP=cuda,webgpu/);
    expect(text).toMatch(/apt-get install -y --no-install-recommends libvulkan1/);
    expect(text).toMatch(/NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics/);
  });

  it('the CPU image is node 22 slim and skips the CUDA download', () => {
    const { ast } = lintDockerfile(read('worker/Dockerfile.cpu'));
    expect(ast.getFROMs().map((f) => `${f.getImageName()}:${f.getImageTag()}`)).toEqual(['node:22.12.0-bookworm-slim']);
    expect(read('worker/Dockerfile.cpu')).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip/);
  });

  it('the root .dockerignore keeps the build context to what the images copy', () => {
    const lines = read('.dockerignore').split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines[0]).toBe('**');
    for (const p of ['!package.json', '!package-lock.json', '!core/**', '!worker/**', '!cli/**']) expect(lines).toContain(p);
  });
});
