/**
 * The node:http transport of the inference endpoint: a `request` listener
 * that serves `POST …/infer` on the direct path (`http-infer.ts`) before
 * fastify sees the request, collecting the body itself.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import type { Cancellation } from "../runtime/cancel.js";
import type { DirectInfer } from "./http-infer.js";

const noop = (): void => {};

/**
 * A connection that closes before the response is written cancels the
 * request. Most requests are answered before `serve` returns, and get no
 * listener.
 */
function cancelOnClose(res: ServerResponse, c: Cancellation | undefined): void {
  if (c === undefined || res.writableFinished) return;
  res.once("close", () => {
    if (!res.writableFinished) c.cancel();
  });
}

/**
 * A `request` listener for `POST …/infer` that runs before fastify: the
 * direct path over node:http, collecting the body itself.
 *
 * @returns a function that serves the request and returns true, or returns
 * false without touching it (fastify serves it then).
 */
export function nodeInferHandler(direct: DirectInfer): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const route = direct.route(req);
    if (route === undefined) return false;
    // A client that goes away mid-body: nothing to answer.
    req.on("error", noop);
    if (route.length === 0) {
      req.resume();
      cancelOnClose(res, direct.serve(req, res, route, undefined));
      return true;
    }
    let first: Buffer | undefined;
    let rest: Buffer[] | undefined;
    req.on("data", (c: Buffer) => {
      if (first === undefined) first = c;
      else (rest ??= [first]).push(c);
    });
    req.on("end", () => {
      cancelOnClose(res, direct.serve(req, res, route, rest ? Buffer.concat(rest) : first));
    });
    return true;
  };
}
