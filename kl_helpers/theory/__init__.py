"""The theory of notebooks 01-05, on small exact problems (no training loop, no language model).

- ``gaussian``: KL between Gaussians, closed form and by quadrature (01, 02)
- ``mixtures``: forward vs reverse KL fits of one Gaussian to a mixture, and on a discrete
  distribution (03)
- ``fdivergences``, ``bregman``: the f-divergence family and Bregman/Jensen divergences (04)
- ``rlhf``: the toy RLHF objective, its exact optimum π_ref·exp(r/β), the k1/k2/k3 estimators (05)
- ``variational``: the ELBO and KL to the posterior (05)
- ``optima``: the exact minimisers of the SFT loss plus β·KL, forward and reverse (05, 07)
"""
