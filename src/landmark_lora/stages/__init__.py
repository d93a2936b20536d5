"""One module per pipeline stage; `dvc.yaml` runs them in order through `landmark-lora <stage>`."""
