"""Algorithm math and update steps: plain torch, no Ray."""
