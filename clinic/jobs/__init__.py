"""Background work: the queue, the clinic-time schedule, and the record of every run."""
