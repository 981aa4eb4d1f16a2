"""Opening a run, new or resumed, and driving it to an exit code: directly (launcher), or as a submitit job."""
