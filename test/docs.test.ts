// The documents' links and file paths point at things that exist. Files move (a module split in
// two, a tool moved to scripts/); this test is what notices the sentence that still names the old
// place. It reads README.md and docs/*.md and checks, outside fenced code blocks:
//
//   1. Every markdown link or image `[text](target)` whose target is not a URL (no `scheme:`)
//      names an existing file or folder, relative to the document (as GitHub resolves it), and
//      its `#anchor`, if any, is a heading of the target document (GitHub's slugs, below). A
//      link that is only `#anchor` points into the document itself.
//   2. Every word of an inline code span that looks like a repository path exists, read from the
//      repository root. A word looks like a path when it contains `/` or ends in one of
//      PATH_EXTENSIONS, and none of these makes it something else:
//        - it starts with `/` (a URL path such as `/orders/{id}`) or contains `:` (a URL, a
//          host:port, a Redis key such as `inventory:<sku>`);
//        - it starts with `@` (a package name such as `@order-pipeline/shared`);
//        - it holds `<`, `{`, `*` or `...`: a pattern such as `<service>/src/` or `*.test.ts`,
//          not a file (a `<...>` placeholder counts as one word, spaces and all); or it holds
//          brackets or parentheses (markdown or code shown as code, not a path);
//        - its first segment is a media type's (`application/json`, `text/plain`).
//      A word without `/` (`reserve-4.lua`, `main.ts`) must be the name of some file in the
//      repository.
//   3. Every docs/*.md is linked from README.md, so no document is out of reach.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PATH_EXTENSIONS = ['.ts', '.mts', '.js', '.mjs', '.json', '.lua', '.md', '.yml', '.yaml', '.conf', '.png', '.svg'];
const MEDIA_TYPES = new Set(['application', 'text', 'image', 'audio', 'video', 'multipart', 'message', 'font', 'model']);
// Not part of the repository as written: dependencies, build output, git's own files.
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', 'coverage']);

function documents(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs.sort()];
}

function read(file: string): string {
  return readFileSync(join(ROOT, file), 'utf8');
}

/** The text outside fenced code blocks (``` or ~~~), line numbers kept (fenced lines become empty). */
function prose(markdown: string): string[] {
  let fence: string | undefined;
  return markdown.split('\n').map((line) => {
    const m = /^\s*(`{3,}|~{3,})/.exec(line);
    if (m) {
      const marker = m[1] as string;
      if (fence === undefined) fence = marker;
      else if (marker[0] === fence[0] && marker.length >= fence.length) fence = undefined;
      return '';
    }
    return fence === undefined ? line : '';
  });
}

/** GitHub's heading slug: lower case, inline markup dropped, anything but letters, digits, `_`, `-` and spaces dropped, spaces to `-`. */
function slugOf(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}_\- ]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor of a document; repeated headings get `-1`, `-2`, ... as on GitHub. */
function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of prose(markdown)) {
    const m = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = slugOf(m[1] as string);
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

/** Inline code spans dropped, so a `[x](y)` shown as code is not taken for a link. */
function withoutCode(line: string): string {
  return line.replace(/(`+)[\s\S]*?\1/g, '');
}

interface Found {
  line: number;
  text: string;
}

function linksIn(markdown: string): Found[] {
  const found: Found[] = [];
  prose(markdown).forEach((line, i) => {
    for (const m of withoutCode(line).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      found.push({ line: i + 1, text: m[1] as string });
    }
  });
  return found;
}

function codePathsIn(markdown: string): Found[] {
  const found: Found[] = [];
  prose(markdown).forEach((line, i) => {
    for (const m of line.matchAll(/(`+)([\s\S]*?)\1/g)) {
      // A placeholder is one word even with spaces in it: `<name>-<number of KEYS>.lua`.
      const span = (m[2] as string).replace(/<[^<>]*>/g, (p) => p.replace(/\s+/g, '_'));
      for (const raw of span.split(/\s+/)) {
        // Punctuation around a word in a command or a list: `(see a/b.ts)`, `a.ts,`.
        const word = raw.replace(/^[("'[]+|[)"',;\]]+$/g, '');
        if (looksLikePath(word)) found.push({ line: i + 1, text: word });
      }
    }
  });
  return found;
}

function looksLikePath(word: string): boolean {
  if (word === '' || word.startsWith('/') || word.startsWith('@') || word.includes(':')) return false;
  if (/[<{*()[\]]|\.\.\./.test(word)) return false;
  if (!word.includes('/') && !PATH_EXTENSIONS.some((ext) => word.endsWith(ext) && word.length > ext.length)) return false;
  if (MEDIA_TYPES.has(word.split('/')[0] as string)) return false;
  return true;
}

let names: Set<string> | undefined;
/** The name of every file in the repository, for a path written as a bare file name. */
function fileNames(): Set<string> {
  if (names) return names;
  names = new Set();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) {
        if (!SKIPPED_DIRS.has(entry.name)) walk(join(dir, entry.name));
      } else names?.add(entry.name);
    }
  };
  walk(ROOT);
  return names;
}

function pathExists(fromRoot: string): boolean {
  if (!fromRoot.includes('/')) return fileNames().has(fromRoot);
  return existsSync(join(ROOT, fromRoot));
}

/** What is wrong with one link of `doc`, or undefined. */
function brokenLink(doc: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto:, ...
  const hash = target.indexOf('#');
  const filePart = decodeURI(hash === -1 ? target : target.slice(0, hash));
  const anchor = hash === -1 ? undefined : target.slice(hash + 1);
  const file = filePart === '' ? join(ROOT, doc) : resolve(dirname(join(ROOT, doc)), filePart);
  if (!existsSync(file)) return `no such file: ${relative(ROOT, file)}`;
  if (anchor === undefined || anchor === '') return undefined;
  if (!statSync(file).isFile() || !file.endsWith('.md')) return `an anchor into a file that is not markdown: ${relative(ROOT, file)}`;
  if (!anchorsOf(readFileSync(file, 'utf8')).has(anchor)) return `no heading with anchor #${anchor} in ${relative(ROOT, file)}`;
  return undefined;
}

describe('the documents', () => {
  it('finds README.md and at least one document under docs/', () => {
    expect(documents().length).toBeGreaterThan(1);
  });

  for (const doc of documents()) {
    it(`${doc}: every relative link points at an existing file and heading`, () => {
      const broken = linksIn(read(doc)).flatMap(({ line, text }) => {
        const why = brokenLink(doc, text);
        return why ? [`${doc}:${line} (${text}): ${why}`] : [];
      });
      expect(broken).toEqual([]);
    });

    it(`${doc}: every repository path written as code exists`, () => {
      const missing = codePathsIn(read(doc)).flatMap(({ line, text }) => (pathExists(text) ? [] : [`${doc}:${line}: ${text}`]));
      expect(missing).toEqual([]);
    });
  }

  it('README.md links to every document under docs/', () => {
    const linked = new Set(
      linksIn(read('README.md'))
        .map(({ text }) => text.split('#')[0] as string)
        .map((t) => relative(ROOT, resolve(ROOT, t))),
    );
    const unlinked = documents()
      .filter((d) => d !== 'README.md')
      .filter((d) => !linked.has(d));
    expect(unlinked).toEqual([]);
  });
});

describe('the rules of the document checks', () => {
  it('takes repository paths and leaves URL paths, keys, media types and patterns alone', () => {
    expect(['shared/src/keys.ts', 'scripts/dlq.mjs', 'reserve-4.lua', 'docs/', '.ci/run'].filter(looksLikePath)).toEqual([
      'shared/src/keys.ts',
      'scripts/dlq.mjs',
      'reserve-4.lua',
      'docs/',
      '.ci/run',
    ]);
    const notPaths = [
      '/orders/{id}',
      'inventory:<sku>',
      'http://otel-collector:4318',
      'application/problem+json',
      'text/event-stream',
      '<service>/src/',
      'bench/results/<timestamp>.json',
      '*/test/*.test.ts',
      'orders.queue',
      '.json',
      'PUBLISH_TIMEOUT_MS',
      '@order-pipeline/shared',
    ];
    expect(notPaths.filter(looksLikePath)).toEqual([]);
  });

  it('finds links outside code only, and code paths inside commands', () => {
    const md = ['See [a](docs/a.md#b) and `[c](d.md)`.', '```', '[e](f.md) `g/h.ts`', '```', 'Run `npx vitest run test/x.test.ts`.'].join(
      '\n',
    );
    expect(linksIn(md)).toEqual([{ line: 1, text: 'docs/a.md#b' }]);
    expect(codePathsIn(md)).toEqual([{ line: 5, text: 'test/x.test.ts' }]);
  });

  it('makes GitHub slugs of headings', () => {
    expect(slugOf('Choices where the spec is silent')).toBe('choices-where-the-spec-is-silent');
    expect(slugOf('`GET /orders/{id}`')).toBe('get-ordersid');
    expect(slugOf('Retries, and dead letters: the `dlq` tool')).toBe('retries-and-dead-letters-the-dlq-tool');
    expect(slugOf('What happens when a part dies')).toBe('what-happens-when-a-part-dies');
  });
});
