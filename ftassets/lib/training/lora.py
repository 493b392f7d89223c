"""The LoRA adapter a recipe trains: which layers and modules get one, and how many parameters train."""

from __future__ import annotations


def lora_config(settings, model):
    """peft LoRA settings; `lora_top_layers` > 0 puts adapters on the model's last layers only, so the
    backward pass stops there (cheaper steps, fewer parameters)."""
    from peft import LoraConfig

    from ftassets.lib.training.checks import linear_layer_names

    targets = settings.target_module_list()
    layers = None
    num_layers, top_layers = model.config.num_hidden_layers, settings.lora_top_layers
    if 0 < top_layers < num_layers:
        layers = list(range(num_layers - top_layers, num_layers))
        if targets == "all-linear":  # peft takes a layer subset only with named targets
            targets = sorted(linear_layer_names(model))
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=targets, layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
