"""The numerics probe: where this machine's floating-point results part from a reference's.

Training the same settings on two CPU kinds (AMD AVX2, Intel AVX-512/AMX) gave different
weights (issue 20). The probe runs the quickstart's training computation once on fixed
inputs (tokenizer training, every module's forward output, the loss, every gradient in the
order backward computes it, gradient clipping, the AdamW and Muon steps, the MTP head and the
distillation loss) and hashes each result's bytes (repro.probe.ops). Hashes are compared with
the reference recorded for the same numerics class (architecture, the pinned kernel ISA,
threads, torch version; repro.probe.reference): the first operation that differs is where the
two machines part, which is what a pin must fix or `repro verify` must tolerate.
"""
