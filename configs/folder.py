r"""Your own images, labelled by you through the file oracle.

  python launch/train.py --config=configs/folder.py \
      --config.dataset=my_images --workdir=workdirs/my_images

`my_images/` holds `labelled/<class>/*.png` (a few images per class; none
yet? `launch/first_labels.py` picks the first to label),
`unlabelled/*.png` (the pool) and optionally `test/<class>/*.png`. Every
known label starts in the ground-truth set; every 5th iteration the run asks
for 10 labels, writes `<workdir>/queries/<iteration>/manifest.csv` and exits
with status 3; fill the label column and relaunch the printed command.
Variant `terminal` asks on the terminal instead. `--config.augment=shift:2`
trains on randomly shifted images (`shift:2+flip` also mirrors them, for
photos, not for digits or text): on MNIST it added 9 points to 130 labels
(README, Results).
"""

from configs import common

VARIANTS = {
    'files': dict(oracle='files'),
    'terminal': dict(oracle='terminal'),
}


def get_config(arg=None):
  config = common.base_config()
  config.name = 'folder'
  config.dataset = ''            # Required: the image folder.
  config.data_source = 'folder'
  config.model = 'cnn'
  config.initial_per_class = -1  # All known labels.
  config.semi = 'all'
  config.acquisition = 'entropy'
  config.query_every = 5
  config.query_size = 10
  config.num_iterations = 20
  config.initial_epochs = 50
  config.num_seeds = 1
  return common.build(arg, VARIANTS, base=config, variant='files')


def sweep(add):
  add('files')
