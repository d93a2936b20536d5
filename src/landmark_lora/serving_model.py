"""MLflow models-from-code entry point of the landmark-lora pyfunc (see landmark_lora.serving).

MLflow copies this file into every logged model and runs it on load; it only names the class.
The settings (steps, guidance, base reference) come from the model's ``model_config`` and the
weights from its artifacts, so nothing is unpickled.
"""

import mlflow.models

from landmark_lora.serving import LandmarkLoraModel

mlflow.models.set_model(LandmarkLoraModel())
