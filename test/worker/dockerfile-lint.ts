import { DockerfileParser, type Dockerfile, type Instruction } from 'dockerfile-ast';

/**
 * hadolint-style rules on dockerfile-ast's parse tree: what the worker images must satisfy. Each finding names
 * the line (1-based) and the rule.
 */
export interface Finding {
  line: number;
  rule: string;
  message: string;
}

const line = (i: Instruction): number => i.getRange().start.line + 1;

export function lintDockerfile(text: string): { ast: Dockerfile; findings: Finding[] } {
  const ast = DockerfileParser.parse(text);
  const findings: Finding[] = [];
  const add = (i: Instruction, rule: string, message: string): void => void findings.push({ line: line(i), rule, message });
  const stages = new Set<string>();
  for (const from of ast.getFROMs()) {
    const image = from.getImageName() ?? '';
    if (stages.has(image)) continue;
    const tag = from.getImageTag();
    if (!from.getImageDigest() && !tag) add(from, 'DL3006', `image ${image} has no tag`);
    if (tag === 'latest') add(from, 'DL3007', `image ${image} uses :latest`);
    if (from.getBuildStage()) stages.add(from.getBuildStage()!);
  }
  const instructions = ast.getInstructions();
  for (const i of instructions) {
    const kw = i.getKeyword();
    const args = i.getArguments().map((a) => a.getValue());
    if (kw === 'ADD' && args.some((a) => /^https?:\/\//.test(a))) add(i, 'DL3020', 'ADD of a URL: fetch with a checked download instead');
    if (kw === 'ADD') add(i, 'DL3020', 'use COPY for local files');
    if (kw === 'RUN' && /\bsudo\b/.test(i.getRawArgumentsContent() ?? '')) add(i, 'DL3004', 'sudo in RUN');
    if (kw === 'RUN' && /\bapt-get install\b/.test(i.getRawArgumentsContent() ?? '') && !/--no-install-recommends/.test(i.getRawArgumentsContent() ?? '')) {
      add(i, 'DL3015', 'apt-get install without --no-install-recommends');
    }
    if ((kw === 'ENTRYPOINT' || kw === 'CMD') && !(i.getRawArgumentsContent() ?? '').trim().startsWith('[')) {
      add(i, 'DL3025', `${kw} in shell form: signals would not reach the process`);
    }
    if (kw === 'WORKDIR' && !args[0]?.startsWith('/')) add(i, 'DL3000', 'WORKDIR must be absolute');
  }
  // The final stage must drop root.
  const lastFrom = ast.getFROMs().at(-1);
  const users = instructions.filter((i) => i.getKeyword() === 'USER' && lastFrom && line(i) > line(lastFrom));
  const lastUser = users.at(-1)?.getArguments()[0]?.getValue();
  if (!lastUser) add(lastFrom ?? instructions[0]!, 'DL3002', 'the final stage runs as root (no USER)');
  else if (/^(root|0)(:.*)?$/.test(lastUser)) add(users.at(-1)!, 'DL3002', 'the last USER is root');
  if (ast.getHEALTHCHECKs().length === 0) add(lastFrom ?? instructions[0]!, 'HEALTHCHECK', 'declare a HEALTHCHECK (or HEALTHCHECK NONE when a probe makes no sense)');
  if (ast.getENTRYPOINTs().length === 0) add(lastFrom ?? instructions[0]!, 'ENTRYPOINT', 'no ENTRYPOINT');
  return { ast, findings };
}
