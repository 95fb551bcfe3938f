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
        'test': ['pytest', 'hypothesis'],
        'examples': ['tqdm', 'matplotlib'],
    },
    classifiers=['License :: OSI Approved :: Apache Software License',
                 'Programming Language :: Python :: 3'],
)
