"""FastTCM-CR50, split by stage: backbone -> prompts/text encoder -> matching (BSM, VPG, ILM)
-> neck -> DB head -> postprocess. `detector.py` wires the stages; `variants.py` names the sizes."""
