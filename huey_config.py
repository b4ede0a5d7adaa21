"""Creates the clinic's Huey object; nothing else. Its storage is set from CLINIC_QUEUE_URL by
clinic.jobs.queue.configure() at start. Each task is declared beside the function it runs."""

from clinic.jobs.queue import create_huey

huey = create_huey()
