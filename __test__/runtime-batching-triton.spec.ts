/**
 * The dynamic batcher through the official tritonclient (HTTP and gRPC),
 * compared with real Triton 2.51.
 *
 * fixtures/batching/probe.py drives the models of fixtures/batching/
 * models.json (one instance each, execute() sleeping a while so that
 * requests queue): a full queue (max_queue_size), a queue timeout with
 * REJECT and with DELAY, allow_timeout_override on and off, priority levels
 * (and a level's own max_queue_size), preferred_batch_size, the default
 * preferred size, max_batch_size as the sum of dim 0, and
 * max_queue_delay_microseconds; then each model's statistics (batch_stats
 * included) over HTTP and gRPC. It prints one transcript per server: each
 * request's error (status and message) or the batch that served it (its
 * total size and the execute() call's index).
 *
 * - tensorbridge's transcript must equal fixtures/batching/triton-2.51.json,
 *   the one real Triton 2.51 gave (needs tritonclient: bench/.work/venv-client).
 * - Where Triton runs here too (bench/.work/venv-peers), it is probed
 *   alongside and the two live transcripts must agree.
 *
 * The transcripts go to bench/.work/batching/ for reading.
 */
import { twinSuite } from "./triton-twin.js";

twinSuite({
  name: "batching",
  config:
    `input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
    `output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "BATCH" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "ORDER" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
    `instance_group [ { count: 1 kind: KIND_CPU } ]\n`,
  probeTimeoutMs: 420_000,
  claim: "answers as Triton 2.51 did",
});
