// Values the global setup (test/global-setup.ts) provides to tests via `inject()`.
declare module 'vitest' {
  export interface ProvidedContext {
    /** redis://host:port of the Redis the tests use */
    redisUrl: string;
    /** amqp://user:pass@host:port of every RabbitMQ node the tests use */
    rabbitmqUrls: string[];
    /** where the servers come from: 'env' | 'local' | 'containers' */
    serverSource: string;
  }
}

export {};
