"""nerf stage."""
