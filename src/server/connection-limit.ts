/**
 * A limit on a listening server's open connections, with a refusal the
 * client can read: past the limit, a new connection gets one short answer
 * (HTTP: `503` with a JSON error; HTTP/2: a `GOAWAY` with
 * `ENHANCE_YOUR_CALM`) and is closed, instead of being served.
 *
 * Why answer at all rather than drop (as `net.Server.maxConnections` does):
 * a client that is dropped sees a reset and retries blindly; one that is
 * told "too many connections" knows what to fix. A refused socket lingers
 * at most {@link REFUSAL_LINGER_MS} (reading and dropping what the client
 * sends, so that the close is a FIN and the answer arrives, not a reset),
 * and at most {@link MAX_LINGERING} refusals linger at once: past that,
 * further connections are dropped at once, so that a flood of refused
 * connections cannot hold file descriptors either.
 *
 * @module
 */
import type { Server as NetServer, Socket } from "node:net";

/** How long a refused connection is kept to deliver its answer, in ms. */
export const REFUSAL_LINGER_MS = 2000;
/** At most this many refused connections wait for their answer at once; more are dropped at once. */
export const MAX_LINGERING = 256;

/** What a connection limit (`ConnectionLimit`, one per port) did so far. */
export interface ConnectionLimitCounters {
  /** Connections open now (accepted, not yet closed). */
  open: number;
  /** Connections refused since the start. */
  refused: number;
}

const noop = (): void => {};

/**
 * Counts a server's open connections and refuses new ones past `max`.
 * Install it after every other `connection` listener is in place (it takes
 * them over and calls them for the connections it accepts).
 */
export class ConnectionLimit {
  /** Open connections and refusals so far. */
  readonly counters: ConnectionLimitCounters = { open: 0, refused: 0 };
  #lingering = 0;

  private constructor(
    readonly max: number,
    readonly refusal: Buffer,
  ) {}

  /**
   * Puts the limit in front of `server`'s `connection` listeners.
   *
   * @param server - a `net.Server` (node:http and node:http2 servers are).
   * @param max - the most connections open at once (0: no limit; connections are counted still).
   * @param refusal - the bytes a refused connection gets before it is closed.
   */
  static install(server: NetServer, max: number, refusal: Buffer): ConnectionLimit {
    const limit = new ConnectionLimit(max, refusal);
    // No limit: connections are still counted.
    const cap = max > 0 ? max : Infinity;
    const listeners = server.listeners("connection") as ((socket: Socket) => void)[];
    server.removeAllListeners("connection");
    const onClose = (): void => {
      limit.counters.open--;
    };
    server.on("connection", (socket: Socket) => {
      if (limit.counters.open >= cap) {
        limit.#refuse(socket);
        return;
      }
      limit.counters.open++;
      socket.once("close", onClose);
      for (const l of listeners) l.call(server, socket);
    });
    return limit;
  }

  #refuse(socket: Socket): void {
    this.counters.refused++;
    socket.on("error", noop);
    if (this.#lingering >= MAX_LINGERING) {
      socket.destroy();
      return;
    }
    this.#lingering++;
    socket.once("close", () => this.#lingering--);
    socket.end(this.refusal);
    // Read and drop what the client sends meanwhile: closing with unread
    // bytes would send a reset, which can overtake the answer.
    socket.resume();
    socket.once("end", () => socket.destroy());
    socket.setTimeout(REFUSAL_LINGER_MS, () => socket.destroy());
  }
}

/**
 * The HTTP/1.1 refusal: `503 Service Unavailable` with a JSON error
 * (`{"error": …}`, as every other error of the server), closing the
 * connection.
 */
export function httpRefusal(max: number, flag: string): Buffer {
  const body = JSON.stringify({
    error: `the server has ${max} connections open, its limit (${flag}): try again later, or reuse a connection`,
  });
  return Buffer.from(
    `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n${body}`,
    "latin1",
  );
}

/**
 * The HTTP/2 refusal: the server's connection preface (an empty
 * `SETTINGS` frame) and a `GOAWAY` with last stream 0 and
 * `ENHANCE_YOUR_CALM`, its debug data saying why; gRPC clients report
 * `UNAVAILABLE` and may retry.
 */
export function http2Refusal(max: number, flag: string): Buffer {
  const debug = Buffer.from(`too many connections: the server has ${max} open, its limit (${flag})`, "latin1");
  const settings = Buffer.from([0, 0, 0, 0x04, 0, 0, 0, 0, 0]);
  const goaway = Buffer.alloc(9 + 8 + debug.length);
  goaway.writeUIntBE(8 + debug.length, 0, 3);
  goaway[3] = 0x07; // GOAWAY
  goaway.writeUInt32BE(0, 9); // last stream id
  goaway.writeUInt32BE(0x0b, 13); // ENHANCE_YOUR_CALM
  debug.copy(goaway, 17);
  return Buffer.concat([settings, goaway]);
}
