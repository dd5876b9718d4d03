// A tour of the Tensor API: wrap JS memory, hand it over DLPack and back
// without copying, and see every copy you ask for.
//   node --import tsx examples/roundtrip.ts
import { Tensor, TensorBridgeError } from "../src/index.js";

const input = new Float32Array([1, 2, 3, 4, 5, 6]);
const x = Tensor.from(input, { shape: [2, 3], name: "INPUT0" });
console.log(`${x}: strides ${x.strides.join(",")}, ${x.byteLength} bytes at 0x${x.dataPtr.toString(16)}`);

const capsule = x.toDlpack({ maxVersion: [1, 0] });
console.log(`exported a ${capsule.versioned ? "versioned (DLPack 1.x)" : "legacy"} capsule at 0x${capsule.address.toString(16)}`);

const y = Tensor.fromDlpack(capsule);
console.log(`imported ${y} at 0x${y.dataPtr.toString(16)}: ${y.dataPtr === x.dataPtr ? "same memory, no copy" : "a copy"}`);

(y.data() as Float32Array)[0] = 100;
console.log(`wrote through the import; the caller's array now starts with ${input[0]}`);

try {
  Tensor.fromDlpack(capsule);
} catch (e) {
  if (e instanceof TensorBridgeError) console.log(`consuming the capsule again fails cleanly: ${e.code}`);
}
