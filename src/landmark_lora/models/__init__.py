"""Model building blocks: the base pipeline (``base``) and LoRA adapter exports (``lora_export``).

    from landmark_lora.models.base import ensure_base_model, load_pipeline
    from landmark_lora.models.lora_export import export_adapter, read_adapter_metadata
"""
