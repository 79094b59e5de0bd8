"""The VM suite runs whole on every CI run. The tests marked vm_full (the user-defined overlay's
mesh and the encrypted overlay, a few minutes under qemu's software emulation) can be left out of
a shorter run with `-m "not vm_full"`."""
