"""DiffusionNAG (An et al., ICLR 2024): predictor-guided architecture generation with a score-based diffusion model.

`encoding` maps a space's architectures to node-operation matrices over a fixed DAG, `sde` holds the VE SDE, the
denoising score-matching loss and the (guided) predictor-corrector sampler, `score_net` the transformer score
network, and `prior` trains, caches and samples the unconditional prior. The dataset-conditioned (MetaD2A set
encoder, transferable NAS) form of the paper is not implemented.
"""
