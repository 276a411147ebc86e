"""Plain (Ray-free) sampling logic that the rollout actors wrap: ``epsilon_greedy`` (DQN),
``on_policy`` (PPO) and ``episodes`` (episode statistics)."""
