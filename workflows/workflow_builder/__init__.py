"""The example-workflow builder of ComfyUI-MicroCinema (standard library only; runs without ComfyUI).

- graph.py: the API-prompt graph builder with automatic node ids, shared with the tests (tests/harness/graph.py);
- specs.py: the trimmed /object_info the forms are built from (workflows/spec/node_specs.json);
- forms.py: a Workflow -> its API form and its UI form (layout, links, widget values);
- examples.py: the shipped workflows, one short function each;
- thumbnails.py: the template-browser cards and the example keyframe picture (Pillow; only when asked).

Entry point: ``python workflows/build_workflows.py`` (see docs/workflows.md).
"""
