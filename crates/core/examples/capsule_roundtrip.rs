//! The README's example: export a tensor as a versioned DLPack capsule, hand
//! its address over as a C consumer would get it, and take it back without a
//! copy.

use tensorbridge_core::{Capsule, DataType, ExportOptions, Tensor};

fn main() -> Result<(), tensorbridge_core::Error> {
    let x = Tensor::zeros(&[2, 3], DataType::F32)?;
    let capsule = Capsule::new(x.to_dlpack(&ExportOptions::versioned())?);
    // A DLManagedTensorVersioned* for a C consumer, which now owns it...
    let address = capsule.release()?;
    // ...or take it back: no copy, and its deleter runs exactly once.
    // SAFETY: `address` came from `release()` just above and nobody else owns it.
    let y = unsafe { Capsule::from_address(address, true) }?.consume()?;
    assert_eq!(y.data_ptr(), x.data_ptr());
    println!("round trip through {address:#x}: same memory, no copy");
    Ok(())
}
