// Static checks of docker-compose.yml, the Dockerfile and .dockerignore: what `docker compose up`
// depends on but only shows at run time (a cluster that is really one cluster, an environment
// every service accepts in production, commands that point at what the image builds). Needs no
// Docker and no server. Each check is a function returning problems; the last block breaks a
// copy of the files on purpose to show every check can fail.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigError, loadConfig, type Config, type ServiceName } from '@order-pipeline/shared';
import { HAPROXY } from './helpers/haproxy.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVICES: readonly ServiceName[] = ['api-gateway', 'order-processor', 'notifier', 'dashboard'];
// What a user publishes by hand: the dashboard (the HTTP API is published by HAProxy in front of
// the gateway replicas: see checkLoadBalancer).
const PUBLISHED: Partial<Record<ServiceName, keyof Config['ports']>> = { dashboard: 'dashboard' };
/** The services run as several replicas, each at least this many. */
const REPLICATED: readonly ServiceName[] = ['api-gateway', 'order-processor', 'notifier'];
const MIN_REPLICAS = 2;

// ---------------------------------------------------------------------------------------------
// The files, as the checks see them

type EnvValue = string | number | boolean | null;
interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  hostname?: string;
  command?: string | string[];
  environment?: Record<string, EnvValue> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  ports?: (string | number | { target: number; published?: string | number })[];
  volumes?: (string | { type?: string; source?: string; target: string })[];
  healthcheck?: { test?: string | string[] };
  restart?: string;
  deploy?: { replicas?: number };
}
interface Compose {
  services: Record<string, ComposeService>;
}

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string | undefined;
  image: string;
  instructions: Instruction[];
}

interface Files {
  compose: Compose;
  stages: Stage[];
  dockerignore: string[];
  /** Reads a file of the repository (relative path); tests swap it to break a file. */
  read: (relativePath: string) => string | undefined;
}

function readRepoFile(relativePath: string): string | undefined {
  const file = path.join(ROOT, relativePath);
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

/** Compose's variable interpolation with every variable unset: what a fresh clone gets. */
function interpolate(value: string, vars: Record<string, string | undefined> = {}): string {
  return value.replace(
    /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (
      _m,
      dollar: string | undefined,
      braced: string | undefined,
      op: string | undefined,
      arg: string | undefined,
      bare: string | undefined,
    ) => {
      if (dollar) return '$';
      const name = (braced ?? bare) as string;
      const v = vars[name];
      const unset = op?.startsWith(':') ? v === undefined || v === '' : v === undefined;
      if (!unset) return v as string;
      if (op === ':-' || op === '-') return arg ?? '';
      // Compose would substitute '' with a warning: a fresh clone must not depend on that.
      throw new Error(`\${${name}} has no default: docker compose up on a fresh clone gets an empty value`);
    },
  );
}

function interpolateAll<T>(value: T, vars: Record<string, string | undefined> = {}): T {
  if (typeof value === 'string') return interpolate(value, vars) as T;
  if (Array.isArray(value)) return value.map((v) => interpolateAll(v, vars)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v, vars)])) as T;
  }
  return value;
}

/** `vars`: the environment `docker compose up` runs in (none: every default applies). */
function loadCompose(text: string, vars: Record<string, string | undefined> = {}): Compose {
  // Merge keys (<<: *anchor) are YAML 1.1, which compose supports.
  const doc: unknown = parse(text, { merge: true });
  if (!doc || typeof doc !== 'object' || !('services' in doc)) throw new Error('docker-compose.yml has no services');
  return interpolateAll(doc as Compose, vars);
}

/** Dockerfile instructions by stage, continuation lines joined, global ARG defaults substituted in FROM. */
function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // a comment inside a continued instruction
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    lines.push(pending + line);
    pending = '';
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const op = (m[1] as string).toUpperCase();
    const args = (m[2] as string).trim();
    const current = stages.at(-1);
    if (op === 'FROM') {
      const f = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!f) throw new Error(`unreadable FROM: ${args}`);
      const image = (f[1] as string).replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_x, name: string) => globalArgs.get(name) ?? '');
      stages.push({ name: f[2], image, instructions: [] });
    } else if (!current) {
      if (op === 'ARG') {
        const a = /^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/.exec(args);
        if (a) globalArgs.set(a[1] as string, (a[2] as string).replace(/^["']|["']$/g, ''));
      }
    } else {
      current.instructions.push({ op, args });
    }
  }
  return stages;
}

function loadFiles(vars: Record<string, string | undefined> = {}): Files {
  return {
    compose: loadCompose(readRepoFile('docker-compose.yml') ?? '', vars),
    stages: parseDockerfile(readRepoFile('Dockerfile') ?? ''),
    dockerignore: (readRepoFile('.dockerignore') ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#')),
    read: readRepoFile,
  };
}

// ---------------------------------------------------------------------------------------------
// Small readers of compose values

function envOf(s: ComposeService): Record<string, string> {
  const env: Record<string, string> = {};
  if (Array.isArray(s.environment)) {
    for (const entry of s.environment) {
      const i = entry.indexOf('=');
      if (i > 0) env[entry.slice(0, i)] = entry.slice(i + 1);
    }
  } else {
    for (const [k, v] of Object.entries(s.environment ?? {})) if (v !== null) env[k] = String(v);
  }
  return env;
}

function commandOf(s: ComposeService): string[] {
  if (Array.isArray(s.command)) return s.command;
  return (s.command ?? '').split(/\s+/).filter((w) => w !== '');
}

function dependsOf(s: ComposeService): Map<string, string> {
  const deps = new Map<string, string>();
  if (Array.isArray(s.depends_on)) for (const d of s.depends_on) deps.set(d, 'service_started');
  else for (const [d, v] of Object.entries(s.depends_on ?? {})) deps.set(d, v.condition ?? 'service_started');
  return deps;
}

/** Published ports as { host, container }. */
function portsOf(s: ComposeService): { host: number | undefined; container: number }[] {
  return (s.ports ?? []).map((p) => {
    if (typeof p === 'object') return { host: p.published === undefined ? undefined : Number(p.published), container: p.target };
    const parts = String(p)
      .replace(/\/(tcp|udp)$/, '')
      .split(':');
    const container = Number(parts.at(-1));
    return { host: parts.length > 1 ? Number(parts.at(-2)) : undefined, container };
  });
}

function mountsOf(s: ComposeService): { source: string; target: string }[] {
  return (s.volumes ?? []).map((v) => {
    if (typeof v === 'object') return { source: v.source ?? '', target: v.target };
    const [source = '', target = ''] = v.split(':');
    return { source, target };
  });
}

function healthTest(s: ComposeService): string {
  const t = s.healthcheck?.test;
  return Array.isArray(t) ? t.join(' ') : (t ?? '');
}

const isRabbit = (s: ComposeService | undefined) => s?.image?.startsWith('rabbitmq:') ?? false;
const isRedis = (s: ComposeService | undefined) => s?.image?.startsWith('redis:') ?? false;

function rabbitNodes(compose: Compose): [string, ComposeService][] {
  return Object.entries(compose.services).filter(([, s]) => isRabbit(s));
}

/** key = value lines of a rabbitmq.conf (new-style sysctl format). */
function parseRabbitConf(text: string): Map<string, string> {
  const conf = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const m = /^([^=\s]+)\s*=\s*(.+)$/.exec(line);
    if (m) conf.set(m[1] as string, (m[2] as string).trim());
  }
  return conf;
}

// ---------------------------------------------------------------------------------------------
// The checks: each returns the problems it finds

function checkRabbitCluster({ compose, read }: Files): string[] {
  const problems: string[] = [];
  const nodes = rabbitNodes(compose);
  if (nodes.length !== 3) problems.push(`expected 3 RabbitMQ nodes, found ${nodes.length}`);
  const expectedNames = nodes.map(([name, s]) => `rabbit@${s.hostname ?? name}`).sort();
  const cookies = new Set<string>();
  for (const [name, s] of nodes) {
    if (!/^rabbitmq:3\.13(-|$)/.test(s.image ?? '')) problems.push(`${name}: image ${s.image} is not RabbitMQ 3.13`);
    if (s.hostname !== name)
      problems.push(`${name}: hostname must be "${name}" (the node name rabbit@<hostname> is what the cluster config lists)`);
    const cookieFile = mountsOf(s).find((m) => m.target.endsWith('/.erlang.cookie'));
    const cookie = envOf(s).RABBITMQ_ERLANG_COOKIE ?? (cookieFile ? `file:${cookieFile.source}` : undefined);
    if (!cookie) problems.push(`${name}: no Erlang cookie (RABBITMQ_ERLANG_COOKIE or a mounted .erlang.cookie): it cannot join the others`);
    else cookies.add(cookie);
    if (!mountsOf(s).some((m) => m.target === '/var/lib/rabbitmq' && m.source !== ''))
      problems.push(`${name}: no volume for /var/lib/rabbitmq`);
    if (!/rabbitmq-diagnostics/.test(healthTest(s))) problems.push(`${name}: no rabbitmq-diagnostics healthcheck`);

    const confMount = mountsOf(s).find(
      (m) => m.target === '/etc/rabbitmq/rabbitmq.conf' || /^\/etc\/rabbitmq\/conf\.d\/.+\.conf$/.test(m.target),
    );
    const confText = confMount ? read(path.normalize(confMount.source)) : undefined;
    if (confText === undefined) {
      problems.push(`${name}: mounts no rabbitmq.conf from the repository`);
      continue;
    }
    const conf = parseRabbitConf(confText);
    const backend = conf.get('cluster_formation.peer_discovery_backend');
    if (backend !== 'classic_config' && backend !== 'rabbit_peer_discovery_classic_config') {
      problems.push(`${name}: cluster_formation.peer_discovery_backend is ${backend}, not classic_config`);
    }
    const listed = [...conf.entries()]
      .filter(([k]) => /^cluster_formation\.classic_config\.nodes\.\d+$/.test(k))
      .map(([, v]) => v)
      .sort();
    if (JSON.stringify(listed) !== JSON.stringify(expectedNames)) {
      problems.push(`${name}: its config lists nodes ${listed.join(', ')}, not the cluster's ${expectedNames.join(', ')}`);
    }
    // A minority side must stop rather than take orders into queues the majority never sees.
    const partitions = conf.get('cluster_partition_handling');
    if (partitions !== 'pause_minority') problems.push(`${name}: cluster_partition_handling is ${partitions}, not pause_minority`);
    // Quorum queues declared before every node joined must grow a member onto each node.
    const reconcile = conf.get('quorum_queue.continuous_membership_reconciliation.enabled');
    const target = conf.get('quorum_queue.continuous_membership_reconciliation.target_group_size');
    if (reconcile !== 'true' || target !== String(nodes.length)) {
      problems.push(
        `${name}: quorum_queue.continuous_membership_reconciliation is ${reconcile ?? 'off'} with target_group_size ${target}, not on with ${nodes.length}`,
      );
    }
  }
  if (cookies.size > 1) problems.push(`the RabbitMQ nodes have different Erlang cookies: they would not form one cluster`);
  const users = new Set(nodes.map(([, s]) => `${envOf(s).RABBITMQ_DEFAULT_USER}:${envOf(s).RABBITMQ_DEFAULT_PASS}`));
  if (users.size > 1) problems.push('the RabbitMQ nodes define different default users');
  return problems;
}

/** The data nodes: the first primary `redis`, and every node started with --replicaof redis 6379. */
function redisNodes(compose: Compose): [string, ComposeService][] {
  return Object.entries(compose.services).filter(([, s]) => isRedis(s) && !isSentinel(s));
}
const isSentinel = (s: ComposeService | undefined) => s !== undefined && isRedis(s) && /--sentinel\b/.test(commandOf(s).join(' '));
const sentinelNodes = (compose: Compose) => Object.entries(compose.services).filter(([, s]) => isSentinel(s));

/** The Sentinels' shared configuration file, as mounted from the repository. */
function sentinelConf(files: Files, s: ComposeService): string | undefined {
  const mount = mountsOf(s).find((m) => m.target === '/etc/redis/sentinel.conf');
  return mount ? files.read(mount.source) : undefined;
}

/** The master name the Sentinels monitor, with its host, port and quorum. */
function monitored(conf: string): { name: string; host: string; port: string; quorum: number } | undefined {
  const m = /^sentinel monitor (\S+) (\S+) (\d+) (\d+)\s*$/m.exec(conf);
  return m ? { name: m[1] as string, host: m[2] as string, port: m[3] as string, quorum: Number(m[4]) } : undefined;
}

function checkRedis(files: Files): string[] {
  const { compose } = files;
  const problems: string[] = [];
  const redis = compose.services.redis;
  if (!redis || !/^redis:7(\.|-|$)/.test(redis.image ?? '')) return ['no "redis" service with a redis:7 image'];
  const nodes = redisNodes(compose);
  const replicas = nodes.filter(([, s]) => /--replicaof\s+redis\s+6379/.test(commandOf(s).join(' ')));
  if (replicas.length < 2) problems.push(`redis: ${replicas.length} replicas (--replicaof redis 6379), not 2`);
  for (const [name, node] of nodes) {
    const cmd = commandOf(node).join(' ');
    if (!/^redis:7(\.|-|$)/.test(node.image ?? '')) problems.push(`${name}: image ${node.image} is not Redis 7`);
    if (!/--appendonly\s+yes/.test(cmd)) problems.push(`${name}: appendonly is not on`);
    if (!/--appendfsync\s+always/.test(cmd))
      problems.push(`${name}: appendfsync is not always (a crash could lose the last second of once-only markers)`);
    // Any node may become the primary: each refuses writes it could not replicate.
    if (!/--min-replicas-to-write\s+[1-9]/.test(cmd)) problems.push(`${name}: min-replicas-to-write is not set`);
    if (!mountsOf(node).some((m) => m.target === '/data' && m.source !== '')) problems.push(`${name}: no volume for /data`);
    if (!/redis-cli\s+ping/.test(healthTest(node))) problems.push(`${name}: no redis-cli ping healthcheck`);
  }
  const volumes = nodes.map(([, n]) => mountsOf(n).find((m) => m.target === '/data')?.source);
  if (new Set(volumes).size !== volumes.length) problems.push('the Redis nodes share a data volume');
  if (!portsOf(redis).some((p) => p.container === 6379 && p.host !== undefined))
    problems.push('redis: 6379 is not published (the README uses redis-cli)');

  const sentinels = sentinelNodes(compose);
  if (sentinels.length < 3) problems.push(`${sentinels.length} Sentinels, not 3`);
  for (const [name, sentinel] of sentinels) {
    const conf = sentinelConf(files, sentinel);
    if (conf === undefined) {
      problems.push(`${name}: mounts no sentinel.conf from the repository`);
      continue;
    }
    const m = monitored(conf);
    if (!m || m.host !== 'redis' || m.port !== '6379') problems.push(`${name}: does not monitor redis:6379`);
    else if (m.quorum !== Math.floor(sentinels.length / 2) + 1)
      problems.push(`${name}: quorum ${m.quorum} is not a majority of ${sentinels.length}`);
    if (!/^sentinel resolve-hostnames yes/m.test(conf)) problems.push(`${name}: resolve-hostnames is off (compose names the nodes)`);
    // Sentinel rewrites its file: it must be a copy on the node's own volume.
    if (!mountsOf(sentinel).some((m) => m.target === '/data' && m.source !== ''))
      problems.push(`${name}: no volume for its rewritten configuration`);
    if (!/redis-cli\s+-p\s+26379\s+ping/.test(healthTest(sentinel))) problems.push(`${name}: no redis-cli -p 26379 ping healthcheck`);
  }
  return problems;
}

function checkService(files: Files, service: ServiceName): string[] {
  const { compose } = files;
  const s = compose.services[service];
  if (!s) return [`${service}: missing from docker-compose.yml`];
  const problems: string[] = [];
  const env = envOf(s);

  if (env.NODE_ENV !== 'production') problems.push(`${service}: NODE_ENV is ${env.NODE_ENV}, not production`);
  let config: Config;
  try {
    // In production nothing falls back to a local default: what compose gives is all there is.
    config = loadConfig(service, { ...env, NODE_ENV: 'production' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return [...problems, `${service}: its environment fails the service's configuration: ${err.message}`];
  }

  const rabbits = rabbitNodes(compose);
  const hosts = new Set<string>();
  for (const u of config.rabbitmqUrls.map((x) => new URL(x))) {
    hosts.add(u.hostname);
    const node = compose.services[u.hostname];
    if (!isRabbit(node)) {
      problems.push(`${service}: RABBITMQ_URLS host ${u.hostname} is not a RabbitMQ service of the compose file`);
      continue;
    }
    if ((u.port || '5672') !== '5672')
      problems.push(`${service}: RABBITMQ_URLS uses port ${u.port} of ${u.hostname}, the node listens on 5672`);
    const nodeEnv = envOf(node as ComposeService);
    const user = nodeEnv.RABBITMQ_DEFAULT_USER ?? 'guest';
    const pass = nodeEnv.RABBITMQ_DEFAULT_PASS ?? 'guest';
    if (decodeURIComponent(u.username) !== user || decodeURIComponent(u.password) !== pass) {
      problems.push(`${service}: the credentials in RABBITMQ_URLS for ${u.hostname} are not the node's default user`);
    }
  }
  const missingNodes = rabbits.map(([n]) => n).filter((n) => !hosts.has(n));
  if (missingNodes.length > 0) problems.push(`${service}: RABBITMQ_URLS leaves out ${missingNodes.join(', ')}: no failover there`);
  if (config.queueType !== 'quorum')
    problems.push(`${service}: QUEUE_TYPE is ${config.queueType}; a cluster wants replicated (quorum) queues`);

  // Redis through the Sentinels: every one of them listed, the name they monitor.
  const sentinels = sentinelNodes(compose);
  const listed = new Set((config.redis.sentinels ?? []).map((a) => `${a.host}:${a.port}`));
  const missingSentinels = sentinels.map(([n, x]) => `${x.hostname ?? n}:26379`).filter((a) => !listed.has(a));
  if (!config.redis.sentinels) problems.push(`${service}: REDIS_SENTINELS is not set`);
  else if (missingSentinels.length > 0) problems.push(`${service}: REDIS_SENTINELS leaves out ${missingSentinels.join(', ')}`);
  const conf = sentinels[0] ? sentinelConf(files, sentinels[0][1]) : undefined;
  const name = conf ? monitored(conf)?.name : undefined;
  if (config.redis.sentinelName !== name)
    problems.push(`${service}: REDIS_SENTINEL_NAME is ${config.redis.sentinelName}, the Sentinels monitor ${name}`);
  if ((config.redis.minReplicas ?? 0) < 1) problems.push(`${service}: REDIS_MIN_REPLICAS is 0: no write waits for a replica`);

  const deps = dependsOf(s);
  for (const dep of [...redisNodes(compose).map(([n]) => n), ...sentinels.map(([n]) => n), ...rabbits.map(([n]) => n)]) {
    const condition = deps.get(dep);
    if (condition !== 'service_healthy') problems.push(`${service}: depends_on ${dep} is ${condition ?? 'missing'}, not service_healthy`);
  }
  if (s.restart !== 'unless-stopped' && s.restart !== 'always') problems.push(`${service}: restart is ${s.restart}`);

  const build = typeof s.build === 'string' ? { context: s.build } : s.build;
  if (!build || path.normalize(build.context ?? '.') !== '.' || (build.dockerfile ?? 'Dockerfile') !== 'Dockerfile') {
    problems.push(`${service}: not built from the repository's Dockerfile`);
  }
  const cmd = commandOf(s);
  if (cmd[0] !== 'node' || cmd[1] !== `${service}/dist/main.js`)
    problems.push(`${service}: command is "${cmd.join(' ')}", not node ${service}/dist/main.js`);

  if (!new RegExp(`https?://(127\\.0\\.0\\.1|localhost):${config.port}/healthz`).test(healthTest(s))) {
    problems.push(`${service}: healthcheck does not fetch /healthz on its port ${config.port}`);
  }
  const ports = portsOf(s);
  for (const p of ports) {
    if (p.container !== config.port) problems.push(`${service}: publishes container port ${p.container}, but it listens on ${config.port}`);
  }
  const publishedAs = PUBLISHED[service];
  if (publishedAs) {
    const want = config.ports[publishedAs];
    if (!ports.some((p) => p.container === want && p.host === want)) problems.push(`${service}: does not publish ${want}:${want}`);
  }
  return problems;
}

function checkPublishedBrokerPorts({ compose }: Files): string[] {
  const rabbit1 = compose.services.rabbit1;
  if (!rabbit1) return ['no rabbit1 service'];
  const published = portsOf(rabbit1).map((p) => p.container);
  return [5672, 15672].filter((p) => !published.includes(p)).map((p) => `rabbit1: ${p} is not published`);
}

/** Resolves a COPY/WORKDIR path against the stage's working directory. */
function absolute(workdir: string, p: string): string {
  return path.posix.normalize(p.startsWith('/') ? p : path.posix.join(workdir, p)).replace(/\/$/, '');
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
  index: number;
}

function copiesOf(stage: Stage): Copy[] {
  let workdir = '/';
  const copies: Copy[] = [];
  stage.instructions.forEach((ins, index) => {
    if (ins.op === 'WORKDIR') workdir = absolute(workdir, ins.args);
    if (ins.op !== 'COPY' && ins.op !== 'ADD') return;
    const words = ins.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    const dest = paths.pop() ?? '';
    copies.push({ from, sources: paths, dest: absolute(workdir, dest), index });
  });
  return copies;
}

function workdirOf(stage: Stage): string {
  return stage.instructions.filter((i) => i.op === 'WORKDIR').reduce((wd, i) => absolute(wd, i.args), '/');
}

const runIndex = (stage: Stage, pattern: RegExp) => stage.instructions.findIndex((i) => i.op === 'RUN' && pattern.test(i.args));

/** A .dockerignore pattern (Go filepath.Match plus **) as a regular expression over a path. */
function dockerignoreRegex(pattern: string): RegExp {
  const body = pattern
    .replace(/^\//, '')
    .replace(/\/$/, '')
    .match(/\*\*\/|\*\*|\*|\?|[^*?]+/g)
    ?.map((t) => {
      if (t === '**/') return '(.*/)?';
      if (t === '**') return '.*';
      if (t === '*') return '[^/]*';
      if (t === '?') return '[^/]';
      return t.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${body ?? ''}$`);
}

function checkDockerfile(files: Files): string[] {
  const { stages, compose, read } = files;
  const problems: string[] = [];
  const final = stages.at(-1);
  if (!final || stages.length < 2) return ['the Dockerfile is not multi-stage (build, then runtime)'];
  for (const st of stages)
    if (st.image !== 'node:20-bookworm-slim') problems.push(`stage ${st.name ?? '?'} is based on ${st.image}, not node:20-bookworm-slim`);

  const finalCopies = copiesOf(final);
  const buildName = finalCopies.find((c) => c.from !== undefined)?.from;
  const build = stages.find((st) => st.name === buildName);
  if (!build) return [...problems, 'the runtime stage copies nothing from a build stage'];

  // Build stage: dependencies, then every source, then the build.
  const buildWd = workdirOf(build);
  const buildCopies = copiesOf(build);
  const npmCi = runIndex(build, /\bnpm ci\b/);
  const tscB = runIndex(build, /\bnpm run build\b|\btsc -b\b/);
  if (npmCi < 0) problems.push('build stage: no npm ci');
  if (tscB < 0 || tscB < npmCi) problems.push('build stage: no npm run build after npm ci');
  for (const dir of ['shared', ...SERVICES]) {
    const src = buildCopies.find(
      (c) => c.dest === `${buildWd}/${dir}/src` || (c.sources.includes(`${dir}/`) && c.dest === `${buildWd}/${dir}`),
    );
    if (!src || src.index > tscB) problems.push(`build stage: ${dir}/src is not copied before the build`);
  }
  const luaIn = buildCopies.find((c) => c.dest === `${buildWd}/shared/lua`);
  if (!luaIn) problems.push('build stage: shared/lua is not copied');
  const openapiIn = buildCopies.find((c) => c.sources.includes('shared/openapi.json'));
  if (!openapiIn) problems.push('build stage: shared/openapi.json is not copied');

  // Runtime stage: production dependencies, the build output, an unprivileged user.
  const wd = workdirOf(final);
  const ciProd = runIndex(final, /\bnpm ci\b.*--omit=dev|--omit=dev.*\bnpm ci\b/);
  if (ciProd < 0) problems.push('runtime stage: no npm ci --omit=dev');
  if (runIndex(final, /\bnpm (run build|install)\b|\btsc\b/) >= 0)
    problems.push('runtime stage: builds or installs beyond npm ci --omit=dev');
  for (const dir of ['', 'shared/', ...SERVICES.map((s) => `${s}/`)]) {
    const copied = finalCopies.some((c) => c.index < ciProd && c.sources.includes(`${dir}package.json`));
    if (!copied) problems.push(`runtime stage: ${dir}package.json is not copied before npm ci (npm ci needs every workspace)`);
  }
  const user = final.instructions.filter((i) => i.op === 'USER').at(-1)?.args;
  if (!user || user === 'root' || user === '0') problems.push('runtime stage: runs as root (want USER node)');
  if (!final.instructions.some((i) => i.op === 'ENV' && /\bNODE_ENV[= ]production\b/.test(i.args)))
    problems.push('runtime stage: NODE_ENV=production is not set');

  const copiedFromBuild = (dir: string) =>
    finalCopies.some(
      (c) => c.from === buildName && c.dest === `${wd}/${dir}` && c.sources.some((s) => absolute(buildWd, s) === `${buildWd}/${dir}`),
    );
  if (!copiedFromBuild('shared/dist')) problems.push('runtime stage: shared/dist is not copied from the build');
  // redis.ts reads ../lua relative to shared/dist.
  if (!copiedFromBuild('shared/lua')) problems.push('runtime stage: shared/lua is not copied next to shared/dist');
  // openapi.ts reads ../openapi.json relative to shared/dist: every service loads it (the order schema).
  if (!copiedFromBuild('shared/openapi.json')) problems.push('runtime stage: shared/openapi.json is not copied next to shared/dist');

  for (const service of SERVICES) {
    const s = compose.services[service];
    const script = s ? commandOf(s)[1] : undefined;
    if (!script) continue; // checkService reports it
    const dir = path.posix.dirname(absolute(wd, script));
    const rel = path.posix.relative(wd, dir);
    if (!copiedFromBuild(rel))
      problems.push(`${service}: its command runs ${script}, but the runtime stage does not copy ${rel} from the build`);
    // tsc -b turns <service>/src/main.ts into <service>/dist/main.js.
    const tsconfig = JSON.parse(read(`${service}/tsconfig.json`) ?? '{}') as { compilerOptions?: { rootDir?: string; outDir?: string } };
    if (tsconfig.compilerOptions?.outDir !== path.posix.basename(dir) || tsconfig.compilerOptions.rootDir !== 'src') {
      problems.push(`${service}: tsconfig does not compile src/ into ${path.posix.basename(dir)}/`);
    }
    if (read(`${service}/src/${path.posix.basename(script).replace(/\.js$/, '.ts')}`) === undefined) {
      problems.push(`${service}: ${script} has no source ${service}/src/${path.posix.basename(script).replace(/\.js$/, '.ts')}`);
    }
  }

  // .dockerignore must keep out local builds and modules, and nothing the build copies.
  const ignored = (p: string) =>
    files.dockerignore.some((pattern) => {
      const re = dockerignoreRegex(pattern);
      const parts = p.split('/');
      // A matching directory excludes everything below it.
      return parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/')));
    });
  for (const must of ['node_modules', 'shared/node_modules', 'api-gateway/dist', 'shared/dist']) {
    if (!ignored(must)) problems.push(`.dockerignore does not exclude ${must}`);
  }
  for (const c of [...buildCopies, ...finalCopies].filter((x) => x.from === undefined)) {
    for (const src of c.sources)
      if (ignored(src.replace(/\/$/, ''))) problems.push(`.dockerignore excludes ${src}, which the Dockerfile copies`);
  }
  return problems;
}

/** Two or more replicas of each service that shares its work; no replica publishes a port of its own. */
function checkReplicas({ compose }: Files): string[] {
  const problems: string[] = [];
  for (const service of REPLICATED) {
    const s = compose.services[service];
    if (!s) continue; // checkService reports it
    const replicas = s.deploy?.replicas ?? 1;
    if (replicas < MIN_REPLICAS) problems.push(`${service}: runs ${replicas} replica(s), not at least ${MIN_REPLICAS}`);
    if (replicas > 1 && portsOf(s).some((p) => p.host !== undefined))
      problems.push(`${service}: its replicas cannot all publish the same host port`);
  }
  return problems;
}

/**
 * HAProxy publishes the API and balances over the gateway replicas, health-checking /readyz on the
 * gateway's port; its configuration is valid for haproxy itself when it is installed.
 */
function checkLoadBalancer(files: Files): string[] {
  const { compose, read } = files;
  const lb = compose.services.haproxy;
  if (!lb) return ['haproxy: missing from docker-compose.yml (the gateway replicas need a load balancer)'];
  const problems: string[] = [];
  if (!/^haproxy:2\./.test(lb.image ?? '')) problems.push(`haproxy: image is ${lb.image}, not haproxy:2.x`);
  const gatewayEnv = envOf(compose.services['api-gateway'] ?? {});
  const gatewayPort = Number(gatewayEnv.GATEWAY_PORT ?? 8080);
  if (!portsOf(lb).some((p) => p.host === gatewayPort && p.container === gatewayPort))
    problems.push(`haproxy: does not publish ${gatewayPort}:${gatewayPort}`);
  if (!dependsOf(lb).has('api-gateway')) problems.push('haproxy: does not depend on api-gateway');
  const mount = (lb.volumes ?? [])
    .map((v) => (typeof v === 'string' ? v.split(':') : [v.source ?? '', v.target]))
    .find((v) => v[1] === '/usr/local/etc/haproxy/haproxy.cfg');
  if (!mount) return [...problems, 'haproxy: mounts no configuration at /usr/local/etc/haproxy/haproxy.cfg'];
  const cfgPath = path.posix.normalize(mount[0] ?? '');
  const cfg = read(cfgPath);
  if (cfg === undefined) return [...problems, `haproxy: its configuration ${cfgPath} is not in the repository`];
  const lines = cfg.split('\n').map((l) => l.replace(/#.*/, '').trim());
  if (!lines.some((l) => new RegExp(`^bind\\s+\\S*:${gatewayPort}\\b`).test(l))) problems.push(`${cfgPath}: binds no :${gatewayPort}`);
  if (!lines.includes('option httpchk GET /readyz')) problems.push(`${cfgPath}: does not health-check GET /readyz`);
  if (!lines.includes('http-check expect status 200')) problems.push(`${cfgPath}: does not expect 200 from /readyz`);
  const servers = lines.filter((l) => /^server(-template)?\s/.test(l));
  if (!servers.some((l) => new RegExp(`\\sapi-gateway:${gatewayPort}\\s.*\\bcheck\\b`).test(l)))
    problems.push(`${cfgPath}: no checked server points at api-gateway:${gatewayPort}`);
  if (!lines.some((l) => /^retry-on\s.*\bconn-failure\b/.test(l)) || !lines.includes('option redispatch'))
    problems.push(`${cfgPath}: a request to a dead gateway is not sent to another one (retry-on conn-failure, option redispatch)`);
  return problems;
}

function allProblems(files: Files): string[] {
  return [
    ...checkRabbitCluster(files),
    ...checkRedis(files),
    ...checkPublishedBrokerPorts(files),
    ...checkReplicas(files),
    ...checkLoadBalancer(files),
    ...SERVICES.flatMap((s) => checkService(files, s)),
    ...checkDockerfile(files),
  ];
}

// ---------------------------------------------------------------------------------------------

describe('docker-compose.yml and the Dockerfile', () => {
  const files = loadFiles();

  it('run the three RabbitMQ nodes as one cluster: shared cookie, every node listed in each config', () => {
    expect(checkRabbitCluster(files)).toEqual([]);
  });

  it('run a Redis primary, two replicas and three Sentinels: AOF and min-replicas-to-write on every node, each on its volume', () => {
    expect(checkRedis(files)).toEqual([]);
  });

  it('publish the broker for local clients and the management UI', () => {
    expect(checkPublishedBrokerPorts(files)).toEqual([]);
  });

  it.each(SERVICES)('give %s an environment its production configuration accepts, wired to the compose servers', (service) => {
    expect(checkService(files, service)).toEqual([]);
  });

  it('build, in the image, every path the compose commands run, as a non-root user', () => {
    expect(checkDockerfile(files)).toEqual([]);
  });

  it("pass the webhook's URL, signing secret and retry schedule from the environment to the notifier", () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    const vars = {
      NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/orders',
      NOTIFY_WEBHOOK_SECRET: secret,
      NOTIFY_RETRY_SCHEDULE: '0,2s,1m',
    };
    const withWebhook = loadFiles(vars);
    // In production a webhook URL without a secret is refused: the secret has to arrive.
    expect(checkService(withWebhook, 'notifier')).toEqual([]);
    const notifier = withWebhook.compose.services.notifier as ComposeService;
    const config = loadConfig('notifier', { ...envOf(notifier), NODE_ENV: 'production' });
    expect(config.notifyWebhookUrl).toBe(vars.NOTIFY_WEBHOOK_URL);
    expect(config.notifyWebhookSecrets).toEqual([secret]);
    expect(config.notifyRetryScheduleMs).toEqual([0, 2000, 60_000]);
  });

  it('run two replicas of the gateway, the processor and the notifier, none publishing a port of its own', () => {
    expect(checkReplicas(files)).toEqual([]);
  });

  it("publish the API through HAProxy, which checks each gateway replica's /readyz", () => {
    expect(checkLoadBalancer(files)).toEqual([]);
  });

  it.skipIf(!HAPROXY)('give HAProxy a configuration haproxy -c accepts', () => {
    const check = spawnSync(HAPROXY as string, ['-c', '-f', path.join(ROOT, 'haproxy/haproxy.cfg')], { encoding: 'utf8' });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
  });
});

describe('the compose checks notice a broken file', () => {
  const pristine = loadFiles();
  const conf = pristine.read('rabbitmq/rabbitmq.conf') ?? '';

  // Each case breaks one thing in a copy of the real files and names the problem it expects.
  const cases: { name: string; expect: RegExp; breakIt: (f: Files) => void }[] = [
    {
      name: 'a node with its own cookie',
      expect: /different Erlang cookies/,
      breakIt: (f) => {
        (f.compose.services.rabbit3?.environment as Record<string, EnvValue>).RABBITMQ_ERLANG_COOKIE = 'other';
      },
    },
    {
      name: 'a config that leaves a node out',
      expect: /lists nodes/,
      breakIt: (f) => {
        const read = f.read;
        f.read = (p) => (p.endsWith('rabbitmq.conf') ? conf.replace(/^cluster_formation\.classic_config\.nodes\.3.*$/m, '') : read(p));
      },
    },
    {
      name: 'a RABBITMQ_URLS host that is not a compose node',
      expect: /rabbitmq-x is not a RabbitMQ service/,
      breakIt: (f) => {
        const env = f.compose.services['order-processor']?.environment as Record<string, string>;
        env.RABBITMQ_URLS = (env.RABBITMQ_URLS ?? '').replace('@rabbit2:', '@rabbitmq-x:');
      },
    },
    {
      name: 'RABBITMQ_URLS that list one node only',
      expect: /api-gateway: RABBITMQ_URLS leaves out rabbit2, rabbit3/,
      breakIt: (f) => {
        const env = f.compose.services['api-gateway']?.environment as Record<string, string>;
        env.RABBITMQ_URLS = (env.RABBITMQ_URLS ?? '').split(',')[0] ?? '';
      },
    },
    {
      name: 'classic (unreplicated) queues',
      expect: /notifier: QUEUE_TYPE is classic/,
      breakIt: (f) => {
        (f.compose.services.notifier?.environment as Record<string, string>).QUEUE_TYPE = 'classic';
      },
    },
    {
      name: 'a config without quorum queue membership reconciliation',
      expect: /continuous_membership_reconciliation is off/,
      breakIt: (f) => {
        const read = f.read;
        f.read = (p) =>
          p.endsWith('rabbitmq.conf') ? conf.replace(/^quorum_queue\.continuous_membership_reconciliation\.enabled.*$/m, '') : read(p);
      },
    },
    {
      name: 'a config that keeps a minority side running',
      expect: /cluster_partition_handling is autoheal/,
      breakIt: (f) => {
        const read = f.read;
        f.read = (p) =>
          p.endsWith('rabbitmq.conf') ? conf.replace(/^cluster_partition_handling.*$/m, 'cluster_partition_handling = autoheal') : read(p);
      },
    },
    {
      name: 'a service that leaves out a Sentinel',
      expect: /notifier: REDIS_SENTINELS leaves out sentinel3:26379/,
      breakIt: (f) => {
        (f.compose.services.notifier?.environment as Record<string, string>).REDIS_SENTINELS = 'sentinel1:26379,sentinel2:26379';
      },
    },
    {
      name: 'a service without WAIT',
      expect: /dashboard: REDIS_MIN_REPLICAS is 0/,
      breakIt: (f) => {
        (f.compose.services.dashboard?.environment as Record<string, string>).REDIS_MIN_REPLICAS = '0';
      },
    },
    {
      name: 'a replica without min-replicas-to-write',
      expect: /redis-replica2: min-replicas-to-write is not set/,
      breakIt: (f) => {
        const r = f.compose.services['redis-replica2'] as ComposeService;
        r.command = commandOf(r)
          .join(' ')
          .replace(/--min-replicas-to-write \d+/, '');
      },
    },
    {
      name: 'Sentinels that monitor another name than the services ask for',
      expect: /api-gateway: REDIS_SENTINEL_NAME is orders, the Sentinels monitor other/,
      breakIt: (f) => {
        const read = f.read;
        f.read = (p) => (p.endsWith('sentinel.conf') ? (read(p) ?? '').replace('monitor orders', 'monitor other') : read(p));
      },
    },
    {
      name: 'a Sentinel quorum that is not a majority',
      expect: /sentinel1: quorum 1 is not a majority of 3/,
      breakIt: (f) => {
        const read = f.read;
        f.read = (p) => (p.endsWith('sentinel.conf') ? (read(p) ?? '').replace(/(monitor orders redis 6379) 2/, '$1 1') : read(p));
      },
    },
    {
      name: 'only two Sentinels',
      expect: /2 Sentinels, not 3/,
      breakIt: (f) => {
        delete f.compose.services.sentinel3;
      },
    },
    {
      name: 'an environment the configuration rejects',
      expect: /dashboard: its environment fails .*QUEUE_TYPE/,
      breakIt: (f) => {
        (f.compose.services.dashboard?.environment as Record<string, string>).QUEUE_TYPE = 'lazy';
      },
    },
    {
      name: 'a production environment without Redis',
      expect: /api-gateway: its environment fails .*REDIS_URL/,
      breakIt: (f) => {
        const env = f.compose.services['api-gateway']?.environment as Record<string, string>;
        delete env.REDIS_SENTINELS;
        delete env.REDIS_SENTINEL_NAME;
      },
    },
    {
      name: 'a service that does not wait for a broker node',
      expect: /notifier: depends_on rabbit2 is missing/,
      breakIt: (f) => {
        delete (f.compose.services.notifier?.depends_on as Record<string, unknown>).rabbit2;
      },
    },
    {
      name: 'a command that runs another path',
      expect: /order-processor: command is/,
      breakIt: (f) => {
        (f.compose.services['order-processor'] as ComposeService).command = ['node', 'order-processor/src/main.ts'];
      },
    },
    {
      name: 'a published port the service does not listen on',
      expect: /api-gateway: publishes container port 3000/,
      breakIt: (f) => {
        (f.compose.services['api-gateway'] as ComposeService).ports = ['8080:3000'];
      },
    },
    {
      name: 'a single notifier',
      expect: /notifier: runs 1 replica\(s\)/,
      breakIt: (f) => {
        delete (f.compose.services.notifier as ComposeService).deploy;
      },
    },
    {
      name: 'gateway replicas publishing a port each',
      expect: /api-gateway: its replicas cannot all publish/,
      breakIt: (f) => {
        (f.compose.services['api-gateway'] as ComposeService).ports = ['8080:8080'];
      },
    },
    {
      name: 'a load balancer that checks /healthz instead of /readyz',
      expect: /does not health-check GET \/readyz/,
      breakIt: (f) => {
        const read = f.read;
        f.read = (p) => (p === 'haproxy/haproxy.cfg' ? read(p)?.replaceAll('GET /readyz', 'GET /healthz') : read(p));
      },
    },
    {
      name: 'no load balancer',
      expect: /haproxy: missing/,
      breakIt: (f) => {
        delete f.compose.services.haproxy;
      },
    },
    {
      name: 'a runtime stage that does not copy a service build',
      expect: /notifier: its command runs notifier\/dist\/main.js, but the runtime stage does not copy/,
      breakIt: (f) => {
        const final = f.stages.at(-1) as Stage;
        final.instructions = final.instructions.filter((i) => !(i.op === 'COPY' && i.args.includes('notifier/dist')));
      },
    },
    {
      name: 'a runtime stage without the Lua scripts',
      expect: /shared\/lua is not copied next to shared\/dist/,
      breakIt: (f) => {
        const final = f.stages.at(-1) as Stage;
        final.instructions = final.instructions.filter((i) => !(i.op === 'COPY' && i.args.includes('shared/lua')));
      },
    },
    {
      name: 'a runtime stage that runs as root',
      expect: /runs as root/,
      breakIt: (f) => {
        const final = f.stages.at(-1) as Stage;
        final.instructions = final.instructions.filter((i) => i.op !== 'USER');
      },
    },
    {
      name: 'a .dockerignore that drops the Lua scripts',
      expect: /\.dockerignore excludes shared\/lua/,
      breakIt: (f) => {
        f.dockerignore = [...f.dockerignore, '**/lua'];
      },
    },
  ];

  it.each(cases)('$name', ({ expect: problem, breakIt }) => {
    const broken: Files = {
      ...structuredClone({ compose: pristine.compose, stages: pristine.stages, dockerignore: pristine.dockerignore }),
      read: pristine.read,
    };
    breakIt(broken);
    expect(allProblems(broken).join('\n')).toMatch(problem);
  });

  it('interpolation refuses a variable without a default, as a fresh clone would get it empty', () => {
    expect(interpolate('a${X:-b}c$${Y}')).toBe('abc${Y}');
    expect(interpolate('${X:-b}', { X: 'set' })).toBe('set');
    expect(() => interpolate('amqp://${RABBITMQ_PASSWORD}@rabbit1')).toThrow(/RABBITMQ_PASSWORD/);
  });
});
