"""The reference SViT checkpoint and how it was trained, shipped inside the svt_deploy package."""
