"""What the pipeline needs from the Hugging Face hub, fetched ahead of time (`repro mirror`)."""
