/**
 * amqplib's multiplexer hands the socket one frame per write() (a publish is two or three, an ack
 * one), each its own system call. Corking the socket for one pass of the multiplexer sends what
 * that pass collected in a single writev: under load, the publishes and acks of many orders.
 * Only how the bytes reach the socket changes, not their order nor when a pass runs. Reaches
 * into amqplib's Connection (its `muxer` and `stream`): returns true once the pass is corked,
 * false, changing nothing, when those are not there (an amqplib whose internals changed).
 */
export function coalesceFrameWrites(model: unknown): boolean {
  const conn = (model as { connection?: { muxer?: { _readIncoming?: () => void }; stream?: unknown } } | undefined)?.connection;
  const mux = conn?.muxer;
  const out = conn?.stream as { cork?: () => void; uncork?: () => void } | undefined;
  const pass = mux?._readIncoming;
  if (!mux || typeof pass !== 'function' || typeof out?.cork !== 'function' || typeof out.uncork !== 'function') return false;
  const { cork, uncork } = out as { cork: () => void; uncork: () => void };
  mux._readIncoming = function (this: unknown) {
    cork.call(out);
    try {
      pass.call(this);
    } finally {
      uncork.call(out);
    }
  };
  return true;
}
