import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, STACK_NAME } from '../app.ts';
import type { StageName } from '../pipeline.ts';

/** A synthesized CloudFormation template (the parts read here). */
export interface Template {
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>;
  Outputs?: Record<string, unknown>;
}

const cache = new Map<StageName, Template>();

/**
 * The template `cdk synth` deploys, without bundling, asset copies or cdk-nag (tests run those separately).
 * Cached per process: a synth takes seconds.
 */
export function synthesizeTemplate(stage: StageName = 'aws'): Template {
  const cached = cache.get(stage);
  if (cached) return cached;
  const outdir = mkdtempSync(join(tmpdir(), 'rsclip-synth-'));
  try {
    const { app } = createApp({ context: { stage }, outdir, templateOnly: true, nag: false });
    const template = app.synth().getStackByName(STACK_NAME).template as Template;
    cache.set(stage, template);
    return template;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** The one resource of a type (the pipeline has one state machine, one upload rule...). */
export function onlyResource(template: Template, type: string, where: (props: Record<string, unknown>) => boolean = () => true) {
  const found = Object.entries(template.Resources).filter(([, r]) => r.Type === type && where(r.Properties ?? {}));
  if (found.length !== 1) throw new Error(`expected one ${type} in the template, found ${found.length}`);
  const [logicalId, resource] = found[0]!;
  return { logicalId, properties: resource.Properties ?? {} };
}

/** Logical ID of the data bucket: the one the stack's BucketName output references. */
export function dataBucketLogicalId(template: Template): string {
  const id = (template.Outputs?.BucketName as { Value?: { Ref?: string } } | undefined)?.Value?.Ref;
  if (!id) throw new Error('the template has no BucketName output referencing the data bucket');
  return id;
}
