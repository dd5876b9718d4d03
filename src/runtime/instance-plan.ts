/**
 * Which model instances a config asks for, and on which device: one per
 * `count` of each `instance_group`, times each of its `gpus` for
 * `KIND_GPU`. A GPU id the machine does not have fails the load, as in
 * Triton, rather than leaving the model to find out at its first request.
 *
 * @module
 */
import { cuda } from "../cuda.js";
import type { ModelConfig } from "./config.js";
import { ServingError } from "./errors.js";

/** One instance to make. */
export interface InstancePlan {
  /** Triton's instance name: `<group>_<index>` (and `_gpu<id>` when the group spans several GPUs). */
  name: string;
  /** What `initialize(args)` gets as `model_instance_kind`. */
  kind: "CPU" | "GPU" | "MODEL";
  /** What `initialize(args)` gets as `model_instance_device_id` (0 for CPU and MODEL instances, as Triton). */
  deviceId: number;
  /** Passive instances take no requests. */
  passive: boolean;
}

/** How many GPUs the machine has, and why none when none (the CUDA driver's answer). */
export interface GpuInventory {
  /** Number of CUDA devices (ids `0` … `count - 1`). */
  count: number;
  /** Why there are none, for the message (e.g. the driver is missing). */
  reason?: string | undefined;
}

/** The GPUs the CUDA driver sees here. */
export function localGpus(): GpuInventory {
  return { count: cuda.deviceCount(), reason: cuda.unavailableReason() };
}

/**
 * The instances a config asks for.
 *
 * @param config - the normalised config.
 * @param gpus - the GPUs present (default: the CUDA driver's answer).
 * @returns the instances, group by group.
 * @throws {ServingError} `ERR_MODEL_LOAD` (Triton's INVALID_ARG) when a
 * `KIND_GPU` group names a GPU id the machine does not have.
 */
export function planInstances(config: ModelConfig, gpus: GpuInventory = localGpus()): InstancePlan[] {
  const plan: InstancePlan[] = [];
  for (const g of config.instance_group) {
    const kind = g.kind === "KIND_GPU" ? "GPU" : g.kind === "KIND_MODEL" ? "MODEL" : "CPU";
    const devices = kind === "GPU" ? g.gpus : [0];
    if (kind === "GPU") {
      for (const id of devices) {
        if (id < gpus.count) continue;
        const present = gpus.count === 0 ? `none${gpus.reason ? ` (${gpus.reason})` : ""}` : Array.from({ length: gpus.count }, (_, i) => i).join(", ");
        throw new ServingError(
          "ERR_MODEL_LOAD",
          `instance group ${g.name} of model ${config.name} specifies invalid or unsupported gpu id ${id}. GPUs present: ${present}. ` +
            `Use kind: KIND_CPU (or KIND_MODEL) for a model that needs no GPU, or list only gpus that exist`,
        );
      }
    }
    for (const dev of devices) {
      for (let c = 0; c < g.count; c++) {
        // Triton's instance names: <group>_<index>, e.g. add_sub_0_0.
        let name = `${g.name}_${c}`;
        if (kind === "GPU" && devices.length > 1) name += `_gpu${dev}`;
        plan.push({ name, kind, deviceId: dev, passive: g.passive });
      }
    }
  }
  return plan;
}
