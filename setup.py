# The nbdev 2 template's setup.py, without `pkg_resources` (gone from new setuptools) and with
# README.md optional; everything is read from settings.ini, which MANIFEST.in puts into the sdist
# (a wheel built from the sdist runs this file there).
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini')
cfg = cfg['DEFAULT']

expected = 'version description keywords author author_email'.split()
missing = [o for o in expected if o not in cfg]
if missing: raise ValueError(f"settings.ini lacks {missing}")

# settings.ini's licence as an SPDX expression (setuptools deprecates License classifiers for it); LICENSE goes in too
licenses = dict(apache2='Apache-2.0', mit='MIT', gpl2='GPL-2.0-only', gpl3='GPL-3.0-only', bsd3='BSD-3-Clause')
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']  # status = 3: '3 - Alpha'
py_versions = '3.10 3.11 3.12 3.13'.split()

min_python = cfg['min_python']
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
bench_requirements = cfg.get('bench_requirements', '').split()
readme = here/'README.md'

setuptools.setup(
    name=cfg['lib_name'],
    license=licenses.get(cfg['license'].lower(), cfg['license']),
    license_files=['LICENSE'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])-1],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
        + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]]
        + ['Topic :: ' + o.strip() for o in cfg.get('topics', '').splitlines() if o.strip()],
    url=cfg['git_url'],
    project_urls={'Documentation': cfg['doc_host'] + cfg['doc_baseurl'], 'Source': cfg['git_url'],
                  'Issues': cfg['git_url'] + '/issues', 'Changelog': cfg['git_url'] + '/blob/' + cfg['branch'] + '/CHANGELOG.md'},
    packages=setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'bench': bench_requirements},
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + min_python,
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else cfg['description'],
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    version=cfg['version'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    description=cfg['description'],
    keywords=cfg['keywords'],
)
