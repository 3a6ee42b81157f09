"""Off-policy agents: the TD3 core, the episode replay buffer, and the training Workspace."""
