import { FINAL, FINAL_FILES } from '../../core/s3-layout.ts';
import { sha256Hex, type ObjectStore } from '../../core/store.ts';
import { safetensorsParts } from '../../core/tensors/safetensors.ts';
import { exportImageEncoder, exportTextEncoder } from '../clip/export.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { modelCard } from './model-card.ts';
import { lineChart } from './plots.ts';
import type { MetricsFile, RunSummary } from './run-summary.ts';

export interface FinalWritten {
  /** URI of the final/ directory. */
  finalPrefix: string;
  /** URI (or path) of final/model.safetensors. */
  model: string;
  sha256: string;
  metrics: MetricsFile;
}

export function metricsFile(run: RunSummary, sha256: string): MetricsFile {
  return {
    model: run.modelName,
    dataset: run.dataset,
    steps: run.steps,
    split: run.evalSplit,
    before: run.evals[0]!.metrics,
    after: run.evals[run.evals.length - 1]!.metrics,
    best: run.best,
    epochs: run.evals,
    test: run.test,
    sha256,
  };
}

function plots(run: RunSummary): Record<string, string> {
  const recallKeys = ['mean_recall', 'image_to_text_R@1', 'text_to_image_R@1'] as const;
  return {
    [FINAL_FILES.lossPlot]: lineChart({
      title: 'Training loss',
      xLabel: 'step',
      yLabel: 'contrastive loss',
      series: [{ name: 'loss', points: run.history.map((h) => [h.step, h.loss]) }],
    }),
    [FINAL_FILES.lrPlot]: lineChart({
      title: 'Learning rate',
      xLabel: 'step',
      yLabel: 'lr',
      series: [{ name: 'lr', points: run.history.map((h) => [h.step, h.lr]) }],
    }),
    [FINAL_FILES.recallPlot]: lineChart({
      title: `Retrieval recall (${run.evalSplit} split)`,
      xLabel: 'step',
      yLabel: 'percent',
      series: recallKeys.map((k) => ({ name: k, points: run.evals.map((e) => [e.step, e.metrics[k]]) })),
    }),
  };
}

/** runs/<runId>/final/ (or <out>/final/), metrics.json last (core/s3-layout.ts FINAL_FILES). */
export async function writeFinal(out: ObjectStore, params: StateDict, run: RunSummary): Promise<FinalWritten> {
  const dir = out.child(FINAL);
  const model = safetensorsParts(params, { format: 'pt' });
  const sha256 = sha256Hex(model);
  await dir.put(FINAL_FILES.model, model);
  await dir.put(FINAL_FILES.imageEncoder, exportImageEncoder(run.config, params));
  await dir.put(FINAL_FILES.textEncoder, exportTextEncoder(run.config, params));
  for (const [name, svg] of Object.entries(plots(run))) await dir.put(name, svg);
  const metrics = metricsFile(run, sha256);
  await dir.put(FINAL_FILES.card, modelCard(run, metrics));
  await dir.put(FINAL_FILES.metrics, `${JSON.stringify(metrics, null, 2)}\n`);
  const root = dir.uri.replace(/\/$/, '');
  return { finalPrefix: `${root}/`, model: `${root}/${FINAL_FILES.model}`, sha256, metrics };
}
