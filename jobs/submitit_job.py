"""The name that submitit jobs queued before jobs/ was split into packages carry in their pickles
(`jobs.submitit_job.TrainingJob`): the class is jobs.launch.submitit_job's, which records USR2 from its first
line on."""
from jobs.launch.submitit_job import TrainingJob, submit  # noqa: F401
