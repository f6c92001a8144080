/** Structured training events, one JSON object per line (CloudWatch and `jq` read them as they are). */
export type TrainEvent = { event: string } & Record<string, unknown>;
export type Logger = (e: TrainEvent) => void;

export const jsonLinesTo =
  (stream: { write(s: string): unknown }): Logger =>
  (e) => {
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
  };

export const silentLogger: Logger = () => undefined;
