import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { issueLine } from '../schema-issue.ts';

const configsDir = join(dirname(fileURLToPath(import.meta.url)), 'configs');

/**
 * open_clip's model-config JSON, restricted to the fields this engine implements. Unknown fields are rejected
 * rather than ignored: a silently ignored option (layer scale, patch dropout, attention pooling...) would build a
 * different network than open_clip and still load the checkpoint.
 */
const ConfigSchema = z
  .object({
    embed_dim: z.number().int().positive(),
    quick_gelu: z.boolean().optional(),
    vision_cfg: z
      .object({
        image_size: z.number().int().positive(),
        layers: z.union([z.number().int().positive(), z.array(z.number().int().positive()).length(4)]),
        width: z.number().int().positive(),
        head_width: z.number().int().positive().optional(),
        patch_size: z.number().int().positive().nullable().optional(),
        mlp_ratio: z.number().positive().optional(),
      })
      .strict(),
    text_cfg: z
      .object({
        context_length: z.number().int().positive(),
        vocab_size: z.number().int().positive(),
        width: z.number().int().positive(),
        heads: z.number().int().positive(),
        layers: z.number().int().positive(),
        mlp_ratio: z.number().positive().optional(),
      })
      .strict(),
  })
  .strict();

/** open_clip's model-config JSON (core/model-config/configs/*.json). `vision_cfg.layers` as a list selects ModifiedResNet. */
export type ClipModelConfig = z.infer<typeof ConfigSchema>;

/** Validates a parsed open_clip model config; `source` names the file in errors. */
export function parseModelConfig(json: unknown, source: string): ClipModelConfig {
  const parsed = ConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`${source}: invalid open_clip model config at ${issueLine(parsed.error)}`);
  }
  const cfg = parsed.data as ClipModelConfig;
  if (isVit(cfg)) {
    const v = vitDims(cfg);
    if (cfg.vision_cfg.patch_size == null) throw new Error(`${source}: a ViT config needs vision_cfg.patch_size`);
    if (cfg.vision_cfg.image_size % v.patch !== 0)
      throw new Error(`${source}: image_size ${cfg.vision_cfg.image_size} is not a multiple of patch_size ${v.patch}`);
    if (cfg.vision_cfg.width % v.headWidth !== 0)
      throw new Error(`${source}: vision width ${cfg.vision_cfg.width} is not a multiple of head_width ${v.headWidth}`);
  }
  if (cfg.text_cfg.width % cfg.text_cfg.heads !== 0)
    throw new Error(`${source}: text width ${cfg.text_cfg.width} is not a multiple of heads ${cfg.text_cfg.heads}`);
  return cfg;
}

/** A config name from core/model-config/configs (e.g. `ViT-B-32`) or a path to an open_clip config JSON. */
export function loadModelConfig(nameOrPath: string): ClipModelConfig {
  const byName = join(configsDir, `${nameOrPath}.json`);
  const file = /^[A-Za-z0-9._-]+$/.test(nameOrPath) && existsSync(byName) ? byName : nameOrPath;
  if (!existsSync(file)) throw new Error(`unknown model config '${nameOrPath}' (known: ${modelConfigNames().join(', ')})`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON.parse's message: it quotes the text around the error, and a file named by mistake (a key, a
    // checkpoint, /etc/shadow) would have its first bytes printed.
    throw new Error(`${file}: not an open_clip model config (not JSON)`);
  }
  return parseModelConfig(json, file);
}

/**
 * Why train.json's `model` is refused, or undefined: config names only, so that a dataset's train.json names no
 * file on the machine that checks it. `rsclip validate`, the Validate step and `rsclip run` apply this one rule.
 */
export function modelNameProblem(model: string): string | undefined {
  const known = modelConfigNames();
  return known.includes(model) ? undefined : `unknown model '${model}' (known: ${known.join(', ')})`;
}

export function modelConfigNames(): string[] {
  return readdirSync(configsDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** `vision_cfg.layers` as a list selects open_clip's ModifiedResNet; a number, the VisionTransformer. */
export const isVit = (cfg: ClipModelConfig): boolean => typeof cfg.vision_cfg.layers === 'number';

/** Derived ViT sizes with open_clip's defaults (head_width 64, mlp_ratio 4). */
export function vitDims(cfg: ClipModelConfig) {
  const v = cfg.vision_cfg;
  const patch = v.patch_size ?? 0;
  const headWidth = v.head_width ?? 64;
  const grid = v.image_size / patch;
  return {
    width: v.width,
    layers: v.layers as number,
    patch,
    headWidth,
    heads: v.width / headWidth,
    mlp: Math.round(v.width * (v.mlp_ratio ?? 4)),
    grid,
    tokens: grid * grid + 1,
    imageSize: v.image_size,
  };
}

export function textDims(cfg: ClipModelConfig) {
  const t = cfg.text_cfg;
  return {
    width: t.width,
    layers: t.layers,
    heads: t.heads,
    mlp: Math.round(t.width * (t.mlp_ratio ?? 4)),
    context: t.context_length,
    vocab: t.vocab_size,
  };
}
