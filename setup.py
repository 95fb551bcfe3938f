from setuptools import find_packages, setup

setup(
    name='mxgradlayer',
    version='0.1.0',
    description='Derivatives of Apache MXNet Gluon networks by their inputs, as trainable, '
                'hybridizable HybridBlocks',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mxgradlayer', 'mxgradlayer.*']),
    python_requires='>=3.8,<3.12',
    install_requires=['mxnet==1.9.1', 'numpy>=1.16,<1.24'],
    extras_require={
        'test': ['pytest==9.2.0', 'hypothesis==6.170.17'],
        # scipy pinned: scikit-learn pulls the newest, which needs numpy >= 1.25
        'examples': ['tqdm==4.70.1', 'matplotlib==3.10.9', 'scikit-learn==1.3.2',
                     'scipy==1.11.4'],
        # export_onnx: mxnet 1.9.1's exporter works with onnx 1.16 (opset 13 written)
        'onnx': ['onnx==1.16.2', 'onnxruntime==1.19.2', 'protobuf==7.36.2'],
    },
    classifiers=['License :: OSI Approved :: Apache Software License',
                 'Programming Language :: Python :: 3'],
)
