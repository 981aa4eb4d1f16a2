"""The supervisor: the parent of a trainer that forwards signals to it and retries it when it dies.
`python -m jobs.supervise -- TRAINER COMMAND ...` (no torch here: it is up in milliseconds)."""
