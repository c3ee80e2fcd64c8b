"""Writing to disk: durable (atomic, disk-full aware) files and folders, one writer per output."""
