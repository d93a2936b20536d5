"""The Prefect event `landmark-lora watch` sends when photos land, and the resource it names.

    from landmark_lora.events import EVENT_PHOTOS_ARRIVED, EVENT_RESOURCE_ID

prefect.yaml's deployment trigger matches on both (keep them equal to its ``expect`` and
``match.prefect.resource.id``).
"""

EVENT_PHOTOS_ARRIVED = "landmark-lora.photos.arrived"
EVENT_RESOURCE_ID = "landmark-lora.incoming"
