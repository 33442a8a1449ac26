"""The command-line tools around grasp_tf: train.run (prune and train), train.analyze (figures), train.export."""
