/**
 * `dynamic_batching { preserve_ordering: true }` through the official
 * tritonclient (HTTP, gRPC unary and a gRPC stream), compared with real
 * Triton 2.51.
 *
 * fixtures/ordering/probe.py drives the models of fixtures/ordering/
 * models.json (two instances each, twin Python and TypeScript models whose
 * work per request is its input, in ms): a slow request, then a fast one and
 * one answered with an error response while the slow one runs. It prints
 * the answers in the order they came back, for the models with and without
 * preserve_ordering, unary (was each answer held for the slow one?), on one
 * stream, and on one stream to a decoupled model (every response in order).
 *
 * - tensorbridge's transcript must equal fixtures/ordering/triton-2.51.json,
 *   the one real Triton 2.51 gave (needs tritonclient: bench/.work/venv-client).
 * - Where Triton runs here too (bench/.work/venv-peers), it is probed
 *   alongside and the two live transcripts must agree.
 *
 * The transcripts go to bench/.work/ordering/ for reading. The
 * runtime's own tests of the same rules: runtime-ordering.spec.ts.
 */
import { twinSuite } from "./triton-twin.js";

twinSuite({
  name: "ordering",
  config:
    `max_batch_size: 1\n` +
    `input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
    `output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
    `instance_group [ { count: 2 kind: KIND_CPU } ]\n`,
  probeTimeoutMs: 300_000,
  claim: "answers in the order Triton 2.51 did",
});
