"""Knowledge distillation: Hinton KD and feature matching, plugged into training."""
