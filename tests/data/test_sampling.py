import torch
from torch.utils.data import Dataset

from pixelwise.data.sampling import EpochSampler, SeededDataset


def test_each_epoch_is_a_permutation_and_epochs_differ():
    sampler = EpochSampler(10, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        pairs = list(sampler)
        assert {e for e, _ in pairs} == {epoch}
        orders.append([i for _, i in pairs])
        assert sorted(orders[-1]) == list(range(10))
    assert orders[0] != orders[1] != orders[2]


def test_start_skips_a_prefix_of_the_same_order():
    sampler = EpochSampler(10, seed=1)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 6


def test_ranks_partition_the_epoch():
    shards = []
    for rank in range(3):
        sampler = EpochSampler(11, seed=0, rank=rank, world_size=3, drop_last=True)
        sampler.set_epoch(5)
        shards.append([i for _, i in sampler])
    assert all(len(s) == 3 for s in shards)
    flat = sum(shards, [])
    assert len(set(flat)) == 9


class RandomDataset(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.rand(3)


def test_seeded_dataset_is_reproducible_and_leaves_global_rng_alone():
    data = SeededDataset(RandomDataset(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = data[(1, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first, data[(1, 2)])
    assert not torch.equal(first, data[(2, 2)]) and not torch.equal(first, data[(1, 3)])
