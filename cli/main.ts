import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UserError, type Command } from './command.ts';

const commandsDir = join(dirname(fileURLToPath(import.meta.url)), 'commands');

async function commandNames(): Promise<string[]> {
  return (await readdir(commandsDir)).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).sort();
}

async function load(name: string): Promise<Command> {
  return (await import(pathToFileURL(join(commandsDir, `${name}.ts`)).href)).default as Command;
}

async function help(): Promise<void> {
  console.log('usage: npm run -s rsclip -- <command> [options]   (npm run -s rsclip -- help <command> for its flags)\n');
  for (const name of await commandNames()) console.log(`  ${name.padEnd(18)} ${(await load(name)).summary}`);
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'help' && rest[0] && (await commandNames()).includes(rest[0])) {
    console.log((await load(rest[0])).help());
    return 0;
  }
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    await help();
    return name ? 0 : 2;
  }
  if (!(await commandNames()).includes(name)) {
    console.error(`rsclip: unknown command '${name}' (see: npm run -s rsclip -- help)`);
    return 2;
  }
  return (await load(name)).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UserError) {
      console.error(`rsclip: ${err.message}`);
      process.exitCode = err.exitCode;
    } else {
      console.error(err);
      process.exitCode = 1;
    }
  },
);
