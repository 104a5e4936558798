"""The pipeline below the task modules: the contract every task follows (:mod:`breastdx.pipeline.task`) and the
one image-classification pipeline that the dataset specs of :mod:`breastdx.tasks` are read by
(:mod:`breastdx.pipeline.classification`, its verbs in :mod:`~breastdx.pipeline.verbs`, its report in
:mod:`~breastdx.pipeline.report`). Nothing here imports a task module.
"""
