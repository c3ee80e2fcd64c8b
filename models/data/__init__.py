"""Real data: IDX and ImageFolder readers, transforms, seeded splits."""
