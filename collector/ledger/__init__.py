"""The job ledger: per job, host and hour, the GPU-seconds allocated, busy and idle, and the energy used."""
