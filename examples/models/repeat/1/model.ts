/**
 * Triton's decoupled `repeat` example in TypeScript: one response per
 * element of IN (OUT = the element, IDX = its index), DELAY ms apart, then
 * the final flag. `execute` returns nothing: the responses go through each
 * request's sender, later, from timers. A client that goes away stops the
 * stream (`sender.isCancelled()`).
 */
import { InferenceResponse, Tensor, type InferenceRequest, type TritonModel } from "tensorbridge";

export default class Repeat implements TritonModel {
  execute(requests: InferenceRequest[]): void {
    for (const request of requests) {
      const values = Int32Array.from(request.getInputTensorByName("IN")!.data() as Int32Array);
      const delay = (request.getInputTensorByName("DELAY")?.data() as Uint32Array | undefined)?.[0] ?? 0;
      const sender = request.getResponseSender();
      if (delay === 0) {
        // No delay: every response now, before execute() returns (a timer
        // per response would add a millisecond each).
        values.forEach((v, i) => sender.send(response(v, i)));
        sender.send(undefined, { final: true });
        continue;
      }
      let i = 0;
      const next = (): void => {
        if (i === values.length || sender.isCancelled()) {
          sender.send(undefined, { final: true });
          return;
        }
        sender.send(response(values[i]!, i));
        i++;
        setTimeout(next, delay);
      };
      next();
    }
  }
}

function response(value: number, index: number): InferenceResponse {
  return new InferenceResponse({ outputTensors: { OUT: Tensor.from(new Int32Array([value])), IDX: Tensor.from(new Uint32Array([index])) } });
}
