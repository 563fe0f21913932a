"""Attribution of a target token's logit to the blocks (and sub-layers) that wrote it."""
