"""ResNet-152 (8 x 2048 a second) and R(2+1)D-18 (1 x 512 a second): see avvp.extraction.base."""
