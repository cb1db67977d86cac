// Static checks of the Kubernetes base (deploy/kubernetes): rendered by `kubectl kustomize` when
// kubectl is installed (as on CI), else from the files its kustomization lists. Every service
// gets an environment its production configuration accepts (read with the services' own loader),
// wired to the RabbitmqCluster's pods and the Redis Sentinels; probes, resources, disruption
// budgets and autoscalers are where the topology needs them. The last block breaks a copy.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig, type ServiceName } from '@order-pipeline/shared';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BASE = path.join(ROOT, 'deploy/kubernetes');
const SERVICES: readonly ServiceName[] = ['api-gateway', 'order-processor', 'notifier', 'dashboard'];
/** The services that do work and must survive losing an instance. */
const REPLICATED: readonly ServiceName[] = ['api-gateway', 'order-processor', 'notifier'];
const CONSUMERS: readonly ServiceName[] = ['order-processor', 'notifier'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rendered manifests are checked field by field
type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: any };

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;

function render(): { manifests: Manifest[]; by: string } {
  if (kubectl) {
    const out = spawnSync('kubectl', ['kustomize', BASE], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error(`kubectl kustomize failed: ${out.stderr}`);
    return { manifests: parseAllDocuments(out.stdout).map((d) => d.toJS() as Manifest), by: 'kubectl kustomize' };
  }
  // Without kubectl: the resources the kustomization lists, as they are (the base has no patches).
  const kustomization = parse(readFileSync(path.join(BASE, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  const manifests = kustomization.resources.flatMap((file) =>
    parseAllDocuments(readFileSync(path.join(BASE, file), 'utf8')).map((d) => d.toJS() as Manifest),
  );
  return { manifests: manifests.filter(Boolean), by: 'the kustomization resources' };
}

const find = (ms: Manifest[], kind: string, name: string) => ms.find((m) => m.kind === kind && m.metadata.name === name);

/** The environment a Deployment's container gets from the ConfigMaps and Secrets it names. */
function envOf(ms: Manifest[], deployment: Manifest): Record<string, string> {
  const container = deployment.spec?.template?.spec?.containers?.[0];
  const env: Record<string, string> = {};
  for (const from of container?.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, find(ms, 'ConfigMap', from.configMapRef.name)?.data ?? {});
    if (from.secretRef) {
      const secret = find(ms, 'Secret', from.secretRef.name);
      Object.assign(env, secret?.stringData ?? {});
      for (const [k, v] of Object.entries((secret?.data ?? {}) as Record<string, string>)) env[k] = Buffer.from(v, 'base64').toString();
    }
  }
  for (const e of container?.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value;
  return env;
}

function checkService(ms: Manifest[], service: ServiceName): string[] {
  const d = find(ms, 'Deployment', service);
  if (!d) return [`${service}: no Deployment`];
  const problems: string[] = [];
  const env = envOf(ms, d);
  let config;
  try {
    config = loadConfig(service, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return [`${service}: its environment fails the service's configuration: ${err.message}`];
  }
  if (!config.production) problems.push(`${service}: NODE_ENV is not production`);

  // Every RabbitMQ URL is a pod of the RabbitmqCluster, and every pod is listed.
  const clusters = ms.filter((m) => m.kind === 'RabbitmqCluster' && m.apiVersion === 'rabbitmq.com/v1beta1');
  const cluster = clusters[0];
  if (!cluster) problems.push('no RabbitmqCluster (rabbitmq.com/v1beta1)');
  else {
    const name = cluster.metadata.name;
    const replicas = Number(cluster.spec?.replicas ?? 1);
    const want = Array.from({ length: replicas }, (_, i) => `${name}-server-${i}.${name}-nodes`);
    const hosts = config.rabbitmqUrls.map((u) => new URL(u).hostname);
    for (const h of hosts)
      if (!want.includes(h)) problems.push(`${service}: RABBITMQ_URLS host ${h} is not a pod of RabbitmqCluster ${name}`);
    for (const w of want) if (!hosts.includes(w)) problems.push(`${service}: RABBITMQ_URLS leaves out ${w}: no failover there`);
    if (replicas < 3) problems.push(`RabbitmqCluster ${name}: ${replicas} node(s), not 3`);
  }
  if (config.queueType !== 'quorum') problems.push(`${service}: QUEUE_TYPE is ${config.queueType}, not quorum`);

  // Redis through Sentinel: every Sentinel named is a pod of the sentinel StatefulSet.
  if (!config.redis.sentinels) problems.push(`${service}: REDIS_SENTINELS is not set (Redis with Sentinel)`);
  else {
    for (const s of config.redis.sentinels) {
      const [pod, svc] = s.host.split('.');
      const set = ms.find((m) => m.kind === 'StatefulSet' && m.spec?.serviceName === svc);
      const ordinal = Number(/-(\d+)$/.exec(pod ?? '')?.[1] ?? NaN);
      const containers = (set?.spec?.template?.spec?.containers ?? []) as { command?: string[] }[];
      const isSentinel = containers.some((c) => (c.command ?? []).join(' ').includes('--sentinel'));
      if (!set || !isSentinel || !(ordinal < Number(set.spec.replicas)) || pod !== `${set.metadata.name}-${ordinal}`)
        problems.push(`${service}: REDIS_SENTINELS host ${s.host} is not a pod of a Sentinel StatefulSet`);
      else if (!containers.some((c) => (c.command ?? []).join(' ').includes(`sentinel monitor ${config.redis.sentinelName} `)))
        problems.push(`${service}: the Sentinels do not monitor ${config.redis.sentinelName}`);
    }
  }

  const c = d.spec.template.spec.containers[0];
  if (JSON.stringify(c.command) !== JSON.stringify(['node', `${service}/dist/main.js`]))
    problems.push(`${service}: command is ${JSON.stringify(c.command)}, not node ${service}/dist/main.js`);
  const portOf = (p: unknown) => (typeof p === 'number' ? p : (c.ports ?? []).find((x: { name: string }) => x.name === p)?.containerPort);
  const probe = (kind: string, wantPath: string) => {
    const p = c[kind]?.httpGet;
    if (!p || p.path !== wantPath || portOf(p.port) !== config.port)
      problems.push(`${service}: ${kind} is not GET ${wantPath} on its port ${config.port}`);
  };
  probe('readinessProbe', '/readyz');
  probe('livenessProbe', '/healthz');
  if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory) problems.push(`${service}: no cpu and memory requests`);

  if (REPLICATED.includes(service)) {
    const labels = d.spec.template.metadata.labels as Record<string, string>;
    const pdb = ms.find(
      (m) =>
        m.kind === 'PodDisruptionBudget' &&
        Object.entries((m.spec?.selector?.matchLabels ?? {}) as Record<string, string>).every(([k, v]) => labels[k] === v) &&
        Object.keys(m.spec?.selector?.matchLabels ?? {}).length > 0,
    );
    if (!pdb) problems.push(`${service}: no PodDisruptionBudget selects its pods`);
    else if (!(Number(pdb.spec.minAvailable ?? 0) >= 1)) problems.push(`${service}: its PodDisruptionBudget lets every pod go`);
    const hpa = ms.find((m) => m.kind === 'HorizontalPodAutoscaler' && m.spec?.scaleTargetRef?.name === service);
    const least = hpa ? Number(hpa.spec.minReplicas ?? 1) : Number(d.spec.replicas ?? 1);
    if (least < 2) problems.push(`${service}: may run ${least} instance, not at least 2`);
    if (CONSUMERS.includes(service) && (!hpa || hpa.spec.scaleTargetRef.kind !== 'Deployment'))
      problems.push(`${service}: no HorizontalPodAutoscaler scales its Deployment`);
  }
  return problems;
}

const allProblems = (ms: Manifest[]) => SERVICES.flatMap((s) => checkService(ms, s));

describe('the Kubernetes base (deploy/kubernetes)', () => {
  const { manifests, by } = render();

  it(`renders (by ${by}) Deployments, PodDisruptionBudgets, autoscalers, a RabbitmqCluster and Redis with Sentinel`, () => {
    const kinds = manifests.map((m) => m.kind);
    for (const kind of ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'RabbitmqCluster', 'StatefulSet'])
      expect(kinds, kind).toContain(kind);
  });

  it.each(SERVICES)('gives %s an environment its production configuration accepts, probes, requests and what its role needs', (service) => {
    expect(checkService(manifests, service)).toEqual([]);
  });
});

describe('the Kubernetes checks notice a broken base', () => {
  const { manifests } = render();
  const cases: { name: string; expect: RegExp; breakIt: (ms: Manifest[]) => void }[] = [
    {
      name: 'a ConfigMap the configuration rejects',
      expect: /environment fails the service's configuration: MAX_BACKLOG/,
      breakIt: (ms) => ((find(ms, 'ConfigMap', 'order-pipeline-config') as Manifest).data.MAX_BACKLOG = 'lots'),
    },
    {
      name: 'a readiness probe on /healthz',
      expect: /api-gateway: readinessProbe is not GET \/readyz/,
      breakIt: (ms) =>
        ((find(ms, 'Deployment', 'api-gateway') as Manifest).spec.template.spec.containers[0].readinessProbe.httpGet.path = '/healthz'),
    },
    {
      name: 'RABBITMQ_URLS naming one node',
      expect: /leaves out rabbitmq-server-1/,
      breakIt: (ms) => {
        const secret = find(ms, 'Secret', 'order-pipeline-secrets') as Manifest;
        secret.stringData.RABBITMQ_URLS = String(secret.stringData.RABBITMQ_URLS).split(',')[0];
      },
    },
    {
      name: 'a consumer without its autoscaler',
      expect: /notifier: no HorizontalPodAutoscaler/,
      breakIt: (ms) =>
        ms.splice(
          ms.findIndex((m) => m.kind === 'HorizontalPodAutoscaler' && m.metadata.name === 'notifier'),
          1,
        ),
    },
    {
      name: 'a gateway without its disruption budget',
      expect: /api-gateway: no PodDisruptionBudget/,
      breakIt: (ms) =>
        ms.splice(
          ms.findIndex((m) => m.kind === 'PodDisruptionBudget' && m.metadata.name === 'api-gateway'),
          1,
        ),
    },
  ];
  it.each(cases)('$name', ({ expect: problem, breakIt }) => {
    const broken = structuredClone(manifests);
    breakIt(broken);
    expect(allProblems(broken).join('\n')).toMatch(problem);
  });
});
